//! `plan PATH...` over several stacks, offline: which files of a folder are
//! configs, `--changed-since` through shared group files, aggregated exit
//! codes, and the combined document (bounded markdown, JSON).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn evalctl(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run evalctl")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A stack's config: `team` uses the shared group file `execution/team.yaml`.
fn config(team: bool, tasks: &str) -> String {
    let execution = if team { "  - execution: team\n".to_owned() } else { "  - execution: slurm/default\n".to_owned() };
    let own = if team { "" } else { "  account: research\n  output_dir: /tmp/evalctl-stacks-test-out\n" };
    format!(
        "defaults:\n{execution}  - deployment: none\n  - _self_\n\
         execution:\n  hostname: localhost\n{own}\
         target:\n  api_endpoint: {{url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}\n\
         evaluation:\n  tasks:\n{tasks}"
    )
}

const TEAM: &str =
    "defaults:\n  - slurm/default\n  - _self_\naccount: research\noutput_dir: /tmp/evalctl-stacks-test-out\n";

/// A git repository with `evals/`: stacks `a` and `b` share the group file
/// `execution/team.yaml`, `c` does not; `gate.yaml` is a gate policy, not
/// a config. All committed.
fn repo(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evalctl-stacks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let evals = dir.join("evals");
    std::fs::create_dir_all(evals.join("execution")).unwrap();
    std::fs::write(evals.join("execution/team.yaml"), TEAM).unwrap();
    std::fs::write(evals.join("a.yaml"), config(true, "    - name: gsm8k\n")).unwrap();
    std::fs::write(evals.join("b.yaml"), config(true, "    - name: hellaswag\n")).unwrap();
    std::fs::write(evals.join("c.yaml"), config(false, "    - name: arc_challenge\n")).unwrap();
    std::fs::write(evals.join("gate.yaml"), "rules:\n  - metric: acc\n    min: 0.5\n").unwrap();
    std::fs::write(dir.join(".gitignore"), ".evalctl/\n").unwrap();
    git(&dir, &["init", "-q", "."]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "stacks"]);
    dir
}

/// The stacks of a combined JSON plan, by name, and the document.
fn planned(out: &Output) -> (Vec<String>, serde_json::Value) {
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{}", show(out)));
    let names = doc["stacks"]
        .as_array()
        .unwrap_or_else(|| panic!("no stacks array\n{}", show(out)))
        .iter()
        .map(|s| s["stack"].as_str().unwrap().to_owned())
        .collect();
    (names, doc)
}

#[test]
fn a_folder_plans_its_configs_and_skips_other_yaml() {
    let dir = repo("folder");
    let out = evalctl(&["plan", "--offline", "--format", "json", "evals"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let (names, doc) = planned(&out);
    // Not gate.yaml (no config key), not execution/team.yaml (a subfolder).
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["kind"], "evalctl-stacks-plan");
    for s in doc["stacks"].as_array().unwrap() {
        assert_eq!(s["errors"].as_array().unwrap().len(), 0, "{s}");
        assert_eq!(s["plan"]["stack"], s["stack"]);
        assert_eq!(s["plan"]["summary"]["create"], 1, "{s}");
        assert!(s["config"].as_str().unwrap().starts_with("evals/"), "{s}");
    }
    assert_eq!(doc["totals"]["stacks"], 3);
    assert_eq!(doc["totals"]["create"], 3);
    assert_eq!(doc["totals"]["with_changes"], 3);
    // A file named explicitly is a config even when the rule would skip it:
    // here its error is shown, at its line.
    let out = evalctl(&["plan", "--offline", "--format", "json", "evals/a.yaml", "evals/gate.yaml"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let (names, doc) = planned(&out);
    assert_eq!(names, ["a", "gate"]);
    let errors: Vec<&str> = doc["stacks"][1]["errors"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    assert!(errors.contains(&"evals/gate.yaml:1:1: error: unknown key `rules` at the top level"), "{errors:?}");
}

#[test]
fn changed_since_selects_the_stacks_a_change_affects_through_shared_group_files() {
    let dir = repo("changed");
    // The shared group file: a and b, not c.
    std::fs::write(dir.join("evals/execution/team.yaml"), format!("{TEAM}walltime: \"03:00:00\"\n")).unwrap();
    let out = evalctl(&["plan", "--offline", "--format", "json", "--changed-since", "HEAD", "evals"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(planned(&out).0, ["a", "b"]);
    assert!(text(&out.stderr).contains("2 of 3 stacks affected by changes since HEAD: a, b"), "{}", show(&out));
    git(&dir, &["commit", "-q", "-am", "walltime"]);

    // One stack's own file: only it.
    std::fs::write(dir.join("evals/c.yaml"), config(false, "    - name: arc_challenge\n    - name: gsm8k\n")).unwrap();
    let out = evalctl(&["plan", "--offline", "--format", "json", "--changed-since", "HEAD", "evals"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(planned(&out).0, ["c"]);

    // A new, untracked config; the others against the commit before.
    std::fs::write(dir.join("evals/d.yaml"), config(true, "    - name: gsm8k\n")).unwrap();
    let out = evalctl(&["plan", "--offline", "--format", "json", "--changed-since", "HEAD~1", "evals"], &dir);
    assert_eq!(planned(&out).0, ["a", "b", "c", "d"], "{}", show(&out));

    // A change to a file no stack reads selects none; the plan says so.
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "c and d"]);
    std::fs::write(dir.join("evals/gate.yaml"), "rules: []\n").unwrap();
    let out = evalctl(
        &["plan", "--offline", "--format", "markdown", "--detailed-exitcode", "--changed-since", "HEAD", "evals"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stdout).contains("0 stacks: 0 with changes."), "{}", show(&out));

    // Run from inside the folder, with a revision git does not know.
    let out = evalctl(&["plan", "--offline", "--changed-since", "no-such-rev", "."], &dir.join("evals"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("--changed-since"), "{}", show(&out));
}

#[test]
fn exit_codes_aggregate_and_one_stack_s_errors_do_not_stop_the_others() {
    let dir = repo("exit");
    let out = evalctl(&["plan", "--offline", "--detailed-exitcode", "evals"], &dir);
    assert_eq!(out.status.code(), Some(2), "any change → 2\n{}", show(&out));
    let out = evalctl(&["plan", "--offline", "evals"], &dir);
    assert_eq!(out.status.code(), Some(0), "changes without --detailed-exitcode → 0\n{}", show(&out));

    // b breaks at a line of its own: exit 1, a and c still planned.
    let broken = config(true, "    - name: hellaswag\n")
        .replace("  hostname: localhost\n", "  hostname: localhost\n  walltme: 1\n");
    std::fs::write(dir.join("evals/b.yaml"), broken).unwrap();
    let out = evalctl(&["plan", "--offline", "--detailed-exitcode", "--format", "json", "evals"], &dir);
    assert_eq!(out.status.code(), Some(1), "any error → 1\n{}", show(&out));
    let (names, doc) = planned(&out);
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(doc["stacks"][0]["plan"]["summary"]["create"], 1);
    assert_eq!(doc["stacks"][2]["plan"]["summary"]["create"], 1);
    assert!(doc["stacks"][1]["plan"].is_null());
    let errors: Vec<&str> = doc["stacks"][1]["errors"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    assert!(errors.iter().any(|e| e.starts_with("evals/b.yaml:7:3: error:") && e.contains("walltme")), "{errors:?}");
    assert_eq!(doc["totals"]["with_errors"], 1);
    // The diagnostics with their snippet on stderr, the table on stdout.
    assert!(text(&out.stderr).contains("evals/b.yaml:7:3"), "{}", show(&out));
    let out = evalctl(&["plan", "--offline", "--no-color", "evals"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let t = text(&out.stdout);
    assert!(t.starts_with("3 stacks: 2 with changes, 1 with errors."), "{t}");
    assert!(t.contains("=== a (evals/a.yaml) ===\nStack `a`") && t.contains("=== c (evals/c.yaml) ==="), "{t}");

    // Several stacks cannot share one saved plan or one set of unit names.
    let out = evalctl(&["plan", "--offline", "--out", "p.json", "evals"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--out saves the plan of one stack"), "{}", show(&out));
    let out = evalctl(&["plan", "--offline", "--only", "gsm8k", "evals/a.yaml", "evals/c.yaml"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("name units of one stack"), "{}", show(&out));
}

#[test]
fn the_combined_markdown_of_many_units_fits_one_comment() {
    let dir = repo("big");
    // 3 stacks × 3,000 tasks, each task's run config its own (a distinct
    // limit_samples): nothing groups, every section must be cut.
    for (name, team) in [("a", true), ("b", true), ("c", false)] {
        let tasks: String = (0..3_000)
            .map(|i| {
                format!(
                    "    - {{name: gsm8k, nemo_evaluator_config: {{config: {{params: {{limit_samples: {}}}}}}}}}\n",
                    i + 1
                )
            })
            .collect();
        std::fs::write(dir.join(format!("evals/{name}.yaml")), config(team, &tasks)).unwrap();
    }
    let out = evalctl(&["plan", "--offline", "--format", "markdown", "--detailed-exitcode", "evals"], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let md = text(&out.stdout);
    assert!(md.chars().count() <= 65_536, "{} characters", md.chars().count());
    assert!(md.len() > 30_000, "the room is used: {} bytes", md.len());
    assert!(md.contains("| stack | config | changes | GPU-h ≤ | errors |"), "{md}");
    assert!(md.contains("| `a` | `evals/a.yaml` | 3000 create |"), "{}", &md[..2_000]);
    assert!(md.contains("| **total** | | 9000 create |"), "{}", &md[..2_000]);
    for s in ["a", "b", "c"] {
        assert_eq!(md.matches(&format!("<details><summary><code>{s}</code>: Plan: 3000 to create")).count(), 1, "{s}");
    }
    assert_eq!(md.matches("<details>").count(), md.matches("</details>").count());
    assert_eq!(md.lines().filter(|l| l.starts_with("```")).count() % 2, 0, "fences are closed");
    assert!(md.contains("(comment limit)"), "a cut is said");

    // The JSON has every unit of every stack.
    let out = evalctl(&["plan", "--offline", "--format", "json", "evals"], &dir);
    let (_, doc) = planned(&out);
    let units: usize =
        doc["stacks"].as_array().unwrap().iter().map(|s| s["plan"]["changes"].as_array().unwrap().len()).sum();
    assert_eq!(units, 9_000);
}
