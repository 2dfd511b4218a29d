//! `plan --offline`, its output formats, saved plans and `diff`: no cluster needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn evalctl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalctl")).args(args).current_dir(cwd).output().expect("run evalctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A private copy of the seed example (plans write `.evalctl/` beside the config).
fn workdir(name: &str, edit: &dyn Fn(String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evalctl-plan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let seed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/slurm_llama_3_1_8b_instruct.yaml"))
            .unwrap();
    std::fs::write(dir.join("evals.yaml"), edit(seed)).unwrap();
    dir
}

#[test]
fn offline_plan_of_a_new_stack_creates_every_task() {
    let dir = workdir("new", &|s| s);
    let out = evalctl(&["plan", "--offline", "--no-color", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("+ hellaswag (create: not on the cluster)"), "{t}");
    // The three scripts differ only in their task's name: shown once.
    assert!(t.contains("# the same change in 3 scripts of 3 units: hellaswag, arc_challenge, winogrande\n--- /dev/null\n+++ b/{unit}/task.sbatch"), "{t}");
    // 8 GPUs a unit, 2 h links, max_walltime 120 h: at most 122 h a chain.
    assert!(
        t.trim_end().ends_with(
            "Plan: 3 to create, 0 to replace, 0 to rerun, 0 to cancel.\nGPU-h ≤ 2928.0 (48.0 for every unit's first link)"
        ),
        "{t}"
    );
    assert!(!t.contains("\x1b["), "no colour when not a terminal");
    let out = evalctl(&["plan", "--offline", "--detailed-exitcode", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn offline_plan_needs_no_secrets_or_user() {
    let dir = workdir("nouser", &|s| s);
    let out = Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(["plan", "--offline", "evals.yaml"])
        .current_dir(&dir)
        .env_remove("USER")
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn json_and_markdown_formats() {
    let dir = workdir("formats", &|s| s);
    let out = evalctl(&["plan", "--offline", "--format", "json", "evals.yaml"], &dir);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], 2);
    assert_eq!(v["summary"]["create"], 3);
    assert_eq!(v["has_changes"], true);
    assert_eq!(v["changes"][0]["action"], "create");
    // Changes carry no scripts: the grouped hunks say what changes.
    for key in ["diff", "before", "after"] {
        assert!(v["changes"][0].get(key).is_none(), "{key} in {}", v["changes"][0]);
    }
    let hunks: Vec<&str> = v["diff_groups"].as_array().unwrap().iter().map(|g| g["hunk"].as_str().unwrap()).collect();
    assert!(hunks.iter().any(|h| h.contains("+#SBATCH --time=02:00:00")), "{hunks:?}");
    let out = evalctl(&["plan", "--offline", "--format", "markdown", "evals.yaml"], &dir);
    let md = text(&out.stdout);
    assert!(md.contains("**Plan: 3 to create, 0 to replace, 0 to rerun, 0 to cancel.**"), "{md}");
    assert!(md.contains("<details><summary>Script changes</summary>\n\n```diff\n"), "{md}");
    assert!(md.trim_end().ends_with("</details>"), "{md}");
}

#[test]
fn markdown_stays_under_the_comment_limit() {
    let dir = workdir("big", &|s| {
        let mut s = s.replace("    - name: winogrande\n", "");
        for i in 0..400 {
            s.push_str(&format!("    - name: winogrande\n      id: w{i}\n"));
        }
        s
    });
    let out = evalctl(&["plan", "--offline", "--format", "markdown", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(md.chars().count() < 65_536, "{} characters", md.chars().count());
    // 400 copies of one task with their own ids: one script shown, not 400.
    assert!(md.contains("# the same change in 400 scripts of 400 units: w0, w1,"), "{md}");
    assert!(md.chars().count() < 30_000, "grouped: {} characters", md.chars().count());
    assert!(md.contains("Plan: 402 to create"));
    assert_eq!(md.matches("```").count() % 2, 0, "fences balanced");
}

#[test]
fn diff_between_two_configs() {
    let dir = workdir("diff", &|s| s);
    std::fs::write(
        dir.join("new.yaml"),
        std::fs::read_to_string(dir.join("evals.yaml"))
            .unwrap()
            .replace("walltime: \"02:00:00\"", "walltime: \"10:00:00\"")
            .replace("    - name: winogrande\n", "    - name: gsm8k\n"),
    )
    .unwrap();
    let out = evalctl(&["diff", "--no-color", "evals.yaml", "new.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("-/+ hellaswag (replace: pending; script changed)"), "{t}");
    assert!(t.contains("-#SBATCH --time=02:00:00\n+#SBATCH --time=10:00:00"), "{t}");
    assert!(t.contains("+ gsm8k (create"), "{t}");
    assert!(t.contains("- winogrande (cancel: removed from the config)"), "{t}");
    // Context of three lines around each change.
    let hunk = t.lines().find(|l| l.starts_with("@@")).unwrap();
    assert!(hunk.starts_with("@@ -") && hunk.contains(",7 +") && hunk.ends_with(",7 @@"), "{hunk}");
}

#[test]
fn saved_plan_is_refused_when_the_config_changed() {
    let dir = workdir("saved", &|s| s);
    let out = evalctl(&["plan", "--offline", "--out", "plan.json", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(saved["kind"], "evalctl-plan");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("plan.json")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a saved plan is readable by its owner only");
    let cfg = dir.join("evals.yaml");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("02:00:00", "03:00:00")).unwrap();
    let out = evalctl(&["apply", "plan.json"], &dir);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the saved plan is stale: the config changed since the plan was made"));
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let dir = workdir("tty", &|s| s);
    let out = Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(["apply", "evals.yaml"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("pass --auto-approve"), "{}", text(&out.stderr));
}

/// The PR comment renders as GitHub shows it: a summary paragraph, an
/// actions table, and the diff in a collapsed block as a `diff` code block.
#[test]
fn markdown_renders_with_a_gfm_renderer() {
    use pulldown_cmark::{Options, Parser, html};
    let dir = workdir("gfm", &|s| s);
    let out = evalctl(&["plan", "--offline", "--format", "markdown", "evals.yaml"], &dir);
    let md = text(&out.stdout);
    let mut rendered = String::new();
    html::push_html(&mut rendered, Parser::new_ext(&md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH));
    assert!(
        rendered.contains("<strong>Plan: 3 to create, 0 to replace, 0 to rerun, 0 to cancel.</strong>"),
        "{rendered}"
    );
    assert!(
        rendered.contains("<table>")
            && rendered.contains(
                "<td>3 units: <code>hellaswag</code>, <code>arc_challenge</code>, <code>winogrande</code></td>"
            ),
        "{rendered}"
    );
    let details = rendered.find("<details><summary>Script changes</summary>").expect("a details block");
    let code = rendered.find("<pre><code class=\"language-diff\">").expect("a diff code block");
    let end = rendered.find("</details>").expect("the block closes");
    assert!(details < code && code < end, "the diff is inside the collapsed block");
    assert!(rendered[code..end].contains("+#SBATCH --time=02:00:00"), "diff lines are code, verbatim");
    assert!(!rendered[..details].contains("#SBATCH"), "nothing of the diff outside the block");
}

/// A one-line change across 40 tasks: the comment names the key first and
/// shows each distinct script change once, in a few KB; text and JSON
/// carry the same causes and groups.
#[test]
fn one_key_changed_across_forty_tasks_is_one_cause_and_one_hunk() {
    let forty = |s: String| {
        let mut s = s.replace("    - name: winogrande\n", "").replace("    - name: arc_challenge\n", "");
        s = s.replace("    - name: hellaswag\n", "");
        for i in 0..40 {
            s.push_str(&format!("    - name: winogrande\n      id: t{i}\n"));
        }
        s
    };
    let dir = workdir("forty", &|s| forty(s.to_owned()));
    let old = std::fs::read_to_string(dir.join("evals.yaml")).unwrap();
    std::fs::write(dir.join("new.yaml"), old.replace("walltime: \"02:00:00\"", "walltime: \"04:00:00\"")).unwrap();
    let out = evalctl(&["diff", "--format", "markdown", "evals.yaml", "new.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(md.len() < 6_000, "{} bytes:\n{md}", md.len());
    assert!(
        md.contains("- execution.walltime: \"02:00:00\" → \"04:00:00\" (new.yaml:17:13); 40 units: t0, t1,"),
        "{md}"
    );
    assert!(md.contains("| `-/+` | 40 units: `t0`, `t1`,"), "{md}");
    assert_eq!(md.matches("# the same change in 40 scripts of 40 units").count(), 2, "task and resume scripts: {md}");
    assert_eq!(md.matches("+#SBATCH --time=04:00:00").count(), 2, "{md}");
    let out = evalctl(&["diff", "--format", "json", "evals.yaml", "new.yaml"], &dir);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["causes"][0]["key"], "execution.walltime", "{v}");
    assert_eq!(v["causes"][0]["units"].as_array().map(Vec::len), Some(40));
    // Three hunks (time, walltime variables, readiness timeout) in each of two scripts.
    assert_eq!(v["diff_groups"].as_array().map(Vec::len), Some(6), "{}", v["diff_groups"]);
    assert_eq!(v["diff_groups"][0]["units"].as_array().map(Vec::len), Some(40));
    let out = evalctl(&["diff", "--no-color", "evals.yaml", "new.yaml"], &dir);
    let t = text(&out.stdout);
    assert!(
        t.contains("Config changes:\n  execution.walltime: \"02:00:00\" → \"04:00:00\" (new.yaml:17:13); 40 units"),
        "{t}"
    );
}

/// `--max-gpu-hours`: a plan over budget exits 7 and says by how much; an
/// unbounded one (no max_walltime) is over any budget.
#[test]
fn a_plan_over_its_gpu_hour_budget_exits_7() {
    let dir = workdir("budget", &|s| s);
    let out = evalctl(&["plan", "--offline", "--max-gpu-hours", "1000", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the plan may use 2928.0 GPU-hours, over the budget of 1000 (--max-gpu-hours)"),
        "{}",
        text(&out.stderr)
    );
    let out = evalctl(&["plan", "--offline", "--max-gpu-hours", "3000", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = evalctl(&["plan", "--offline", "--format", "json", "evals.yaml"], &dir);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cost"]["gpu_hours_max"], 2928.0, "{}", v["cost"]);
    assert_eq!(v["cost"]["units"][0]["gpus"], 8);
    let out = evalctl(
        &["plan", "--offline", "--max-gpu-hours", "1e9", "-o", "execution.max_walltime=null", "evals.yaml"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unbounded (3 units have no max_walltime"), "{}", text(&out.stderr));
}

/// `--only`: the plan shows only the units targeted, and says which
/// others it left out.
#[test]
fn only_limits_the_plan_to_its_units() {
    let dir = workdir("only", &|s| s);
    let out = evalctl(&["plan", "--offline", "--no-color", "--only", "hella*", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("+ hellaswag (create") && !t.contains("+ winogrande"), "{t}");
    assert!(t.contains("note: left out by --only/--exclude, with changes: arc_challenge, winogrande"), "{t}");
    assert!(t.contains("Plan: 1 to create,"), "{t}");
    let out = evalctl(&["plan", "--offline", "--exclude", "nope", "evals.yaml"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--exclude names no unit of stack `evals`: `nope`"), "{}", text(&out.stderr));
}

/// The seed config with its tasks replaced by `n` winogrande tasks,
/// `t00`, `t01`, ... (ids of `width` digits).
fn winogrande_only(s: String, n: usize, width: usize) -> String {
    let mut s = s.replace("    - name: winogrande\n", "").replace("    - name: arc_challenge\n", "");
    s = s.replace("    - name: hellaswag\n", "");
    for i in 0..n {
        s.push_str(&format!("    - name: winogrande\n      id: t{i:0width$}\n"));
    }
    s
}

/// Golden outputs of a change across many units: one key for all twelve
/// tasks and one for a single task. Causes first, each distinct hunk once.
#[test]
fn grouped_plan_outputs_are_golden() {
    let dir = workdir("golden", &|s| winogrande_only(s, 12, 2));
    let old = std::fs::read_to_string(dir.join("evals.yaml")).unwrap();
    let new = old.replace("walltime: \"02:00:00\"", "walltime: \"03:00:00\"").replace(
        "      id: t05\n",
        "      id: t05\n      nemo_evaluator_config: {config: {params: {limit_samples: 50}}}\n",
    );
    std::fs::write(dir.join("new.yaml"), new).unwrap();
    let run = |format: &str| {
        let out = evalctl(&["diff", "--no-color", "--format", format, "evals.yaml", "new.yaml"], &dir);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    insta::assert_snapshot!("grouped_text", run("text"));
    let md = run("markdown");
    insta::assert_snapshot!("grouped_markdown", md);
    // As GitHub renders it: the causes a list, the diff a code block in the
    // collapsed section, outside the list.
    use pulldown_cmark::{Options, Parser, html};
    let mut page = String::new();
    html::push_html(&mut page, Parser::new_ext(&md, Options::ENABLE_TABLES));
    assert!(page.contains("<li>execution.walltime: \"02:00:00\" → \"03:00:00\""), "{page}");
    let (list_end, details) = (page.find("</ul>").expect("a list"), page.find("<details>").expect("details"));
    assert!(list_end < details, "the details block is not inside the list: {page}");
    assert!(page.contains("<pre><code class=\"language-diff\"># the same change in 12 scripts of 12 units"), "{page}");
    let v: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    let doc =
        serde_json::json!({"causes": v["causes"], "diff_groups": v["diff_groups"], "cost": v["cost"]["gpu_hours_max"]});
    insta::assert_snapshot!("grouped_json", serde_json::to_string_pretty(&doc).unwrap());
}

/// Grouping a plan of many changes takes its digests on several threads:
/// the groups and their members come out as in plan order all the same.
#[test]
fn grouping_many_changes_keeps_plan_order() {
    let dir = workdir("grouping-many", &|s| winogrande_only(s, 1100, 4));
    let old = std::fs::read_to_string(dir.join("evals.yaml")).unwrap();
    let new = old.replace("walltime: \"02:00:00\"", "walltime: \"03:00:00\"").replace(
        "      id: t1049\n",
        "      id: t1049\n      nemo_evaluator_config: {config: {params: {limit_samples: 50}}}\n",
    );
    std::fs::write(dir.join("new.yaml"), new).unwrap();
    let out = evalctl(&["diff", "--no-color", "--format", "json", "evals.yaml", "new.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let groups = v["diff_groups"].as_array().unwrap();
    let names = |g: &serde_json::Value, key: &str| -> Vec<String> {
        g[key].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
    };
    // The walltime's hunks (one per script of a unit): every unit, in
    // plan order.
    let walls: Vec<&serde_json::Value> =
        groups.iter().filter(|g| g["hunk"].as_str().unwrap().contains("+export EVALCTL_WALLTIME_S=10800")).collect();
    assert_eq!(walls.len(), 2, "{walls:?}");
    let units: Vec<String> = (0..1100).map(|i| format!("t{i:04}")).collect();
    for wall in &walls {
        assert_eq!(names(wall, "units"), units);
        let scripts = names(wall, "scripts");
        let mut sorted = scripts.clone();
        sorted.sort();
        assert_eq!((scripts.len(), &scripts), (1100, &sorted), "plan order");
    }
    let wall = walls[0];
    // t1049's own change is a group of its own, after the shared one.
    let own: Vec<&serde_json::Value> =
        groups.iter().filter(|g| g["hunk"].as_str().unwrap().contains("limit_samples")).collect();
    assert!(!own.is_empty());
    for g in &own {
        assert_eq!(names(g, "units"), ["t1049"]);
    }
    let at = |g: &serde_json::Value| groups.iter().position(|x| x == g).unwrap();
    assert!(own.iter().all(|g| at(g) > at(wall)), "groups in order of first appearance");
}
