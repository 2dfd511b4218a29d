//! Configs written by an attacker (a pull request).
//!
//! CI runs `plan --format markdown` on a PR's config and posts the output,
//! and `apply` later runs it with cluster credentials. The hand-written tests
//! below check what evalctl may read: composition stays inside the config's
//! own folder tree, only regular files are read, and a size limit holds.
//! Each runs the real binary and asserts the exit code, where the error
//! points, its message, and that nothing of the outside file appears.
//!
//! The corpus under `tests/hostile/` covers the other classes of attack
//! (values that try to become code, names that are paths or markup,
//! composition escapes, inputs that explode). Every case is one file
//! `NN-name.yaml`, or a folder `NN-name/` whose `config.yaml` is the case
//! (for cases that need files beside them), with its expectation in its
//! header comments:
//!
//! ```text
//! # class: inject | names | compose | exhaust | limits   what it attacks
//! # exit: 0 | 1                                  of `validate` and `plan --offline` alike
//! # expect: LINE:COL: MESSAGE-SUBSTRING          an error in the case file, in order
//! # expect-at: SOURCE:LINE:COL: MESSAGE          an error in another source (`<-o #1>`)
//! # override: key.path=value                    passed as `-o key.path=value`
//! # env: NAME=value                              the only variables visible (besides PATH)
//! ```
//!
//! A case with `exit: 1` lists every error, each once; a case with
//! `exit: 0` (accepted: the value is carried verbatim and inert) is also
//! rendered, and every script it yields must be valid bash.

mod corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Text that must never appear in evalctl's output.
const CANARY: &str = "CANARY-outside-file-7f3a";

struct Case {
    root: PathBuf,
}

impl Case {
    fn new(name: &str) -> Case {
        let root = std::env::temp_dir().join(format!("evalctl-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("repo")).unwrap();
        // A file of the CI runner, outside the config's folder.
        std::fs::write(
            root.join("secret.yaml"),
            format!("deployment:\n  command: {CANARY}\nexecution:\n  account: {CANARY}\n"),
        )
        .unwrap();
        Case { root }
    }

    fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    /// Writes the config (`defaults` given) into the repo folder.
    fn config(&self, defaults: &str) -> PathBuf {
        let path = self.repo().join("evals.yaml");
        std::fs::write(
            &path,
            format!(
                "defaults:\n{defaults}\nexecution:\n  output_dir: /shared/evals\n  account: acct\n\
                 target:\n  api_endpoint:\n    url: http://host:8000/v1/chat/completions\n    model_id: m\n\
                 evaluation:\n  tasks:\n    - name: gsm8k\n"
            ),
        )
        .unwrap();
        path
    }

    fn plan(&self, config: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_evalctl"))
            .args(["plan", "--offline", "--format", "markdown"])
            .arg(config)
            .output()
            .expect("run evalctl")
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit 1, an error at `line:col` of the config with `message`, no canary.
fn refused(out: &Output, config: &Path, at: &str, message: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let want = format!("{}:{at}: error: ", config.display());
    assert!(stderr.contains(&want), "error at {at}:\n{stderr}");
    assert!(stderr.contains(message), "message {message:?}:\n{stderr}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY), "the outside file leaked:\n{stdout}\n{stderr}");
}

#[test]
fn a_defaults_entry_cannot_be_an_absolute_path() {
    let c = Case::new("abs");
    let outside = c.root.join("secret");
    let cfg = c.config(&format!("  - {}\n  - _self_", outside.display()));
    refused(&c.plan(&cfg), &cfg, "2:5", "is an absolute path");
}

#[test]
fn a_defaults_entry_cannot_climb_out_of_the_folder() {
    let c = Case::new("climb");
    for (entry, at) in [
        ("  - ../secret", "2:5"),
        ("  - deployment: ../../secret", "2:17"),
        ("  - execution: slurm/../../../secret", "2:16"),
        ("  - override deployment: ../secret", "2:26"),
    ] {
        let cfg = c.config(&format!("{entry}\n  - _self_"));
        refused(&c.plan(&cfg), &cfg, at, "is not a plain name");
    }
}

#[test]
fn a_symlink_may_not_lead_out_of_the_folder() {
    let c = Case::new("link");
    std::fs::create_dir_all(c.repo().join("deployment")).unwrap();
    std::os::unix::fs::symlink(c.root.join("secret.yaml"), c.repo().join("deployment/mine.yaml")).unwrap();
    let cfg = c.config("  - deployment: mine\n  - _self_");
    refused(&c.plan(&cfg), &cfg, "2:17", "leads outside the config's folder");
    // A symlinked group folder that leads out is refused the same way.
    std::fs::create_dir_all(c.root.join("elsewhere")).unwrap();
    std::fs::copy(c.root.join("secret.yaml"), c.root.join("elsewhere/mine.yaml")).unwrap();
    std::os::unix::fs::symlink(c.root.join("elsewhere"), c.repo().join("execution")).unwrap();
    let cfg = c.config("  - execution: mine\n  - _self_");
    refused(&c.plan(&cfg), &cfg, "2:16", "leads outside the config's folder");
}

#[test]
fn a_symlink_inside_the_folder_is_followed() {
    let c = Case::new("inside");
    std::fs::create_dir_all(c.repo().join("deployment")).unwrap();
    std::fs::write(c.repo().join("shared.yaml"), "type: none\n").unwrap();
    std::os::unix::fs::symlink(c.repo().join("shared.yaml"), c.repo().join("deployment/mine.yaml")).unwrap();
    let cfg = c.config("  - deployment: mine\n  - _self_");
    let out = c.plan(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn devices_fifos_and_huge_files_are_not_read() {
    let c = Case::new("special");
    std::fs::create_dir_all(c.repo().join("deployment")).unwrap();
    // A group option that is a symlink to /dev/zero (outside, and endless).
    std::os::unix::fs::symlink("/dev/zero", c.repo().join("deployment/zero.yaml")).unwrap();
    let cfg = c.config("  - deployment: zero\n  - _self_");
    refused(&c.plan(&cfg), &cfg, "2:17", "leads outside the config's folder");
    // A FIFO inside the folder: refused at once, never opened.
    let fifo = c.repo().join("deployment/fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let cfg = c.config("  - deployment: fifo\n  - _self_");
    let started = Instant::now();
    refused(&c.plan(&cfg), &cfg, "2:17", "not a regular file");
    assert!(started.elapsed() < Duration::from_secs(5), "a FIFO must not block");
    // The config itself: a FIFO, a device, a file over the limit.
    for (path, why) in [(fifo.clone(), "not a regular file"), (PathBuf::from("/dev/zero"), "not a regular file")] {
        let out = c.plan(&path);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }
    let big = c.repo().join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(1 << 20))).unwrap();
    let out = c.plan(&big);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("larger than 1024 KiB"), "{}", text(&out.stderr));
}

#[test]
fn listing_group_options_ends_on_symlink_loops() {
    let c = Case::new("loop");
    let dir = c.repo().join("deployment/a");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(c.repo().join("deployment"), dir.join("loop")).unwrap();
    std::fs::write(c.repo().join("deployment/real.yaml"), "type: none\n").unwrap();
    let cfg = c.config("  - deployment: missing\n  - _self_");
    let started = Instant::now();
    let out = c.plan(&cfg);
    assert!(started.elapsed() < Duration::from_secs(5));
    refused(&out, &cfg, "2:17", "unknown option `missing` for config group `deployment`");
    assert!(text(&out.stderr).contains("real"), "options are listed: {}", text(&out.stderr));
}

/// Fields that are not shell (`served_model_name`, `hf_model_handle`) reach
/// the server as single arguments, and `extra_args` as arguments, whatever
/// they hold: the built-in groups' server commands are run under `bash -c`
/// with recording stand-ins for the servers, and nothing injected runs.
#[test]
fn values_spliced_into_server_commands_stay_arguments() {
    let c = Case::new("splice");
    let bin = c.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = "#!/bin/bash\nfor a in \"$0\" \"$@\"; do printf '%s\\0' \"$a\"; done >\"$ARGV_OUT\"\n";
    for name in ["vllm", "python3", "trtllm-serve"] {
        std::fs::write(bin.join(name), record).unwrap();
    }
    std::fs::write(bin.join("mpirun"), "#!/bin/bash\nshift 2\nexec \"$@\"\n").unwrap();
    std::fs::write(bin.join("ray"), "#!/bin/bash\n[ \"$1\" = status ] && echo ' 1 node_a'\nexit 0\n").unwrap();
    for name in ["vllm", "python3", "trtllm-serve", "mpirun", "ray"] {
        let p = bin.join(name);
        std::process::Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    }
    let pwned = c.root.join("pwned");
    let model = format!("m; touch {} #", pwned.display());
    let handle = format!("org/m$(touch {})'`touch {}`", pwned.display(), pwned.display());
    let extra = format!("--max-model-len 4096 --chat-template \"a b\" ;touch {}", pwned.display());
    for group in ["vllm", "sglang", "trtllm", "vllm_ray"] {
        let text = format!(
            "defaults:\n  - execution: slurm/default\n  - deployment: {group}\n  - _self_\n\
             execution:\n  account: acct\n  output_dir: /shared/evals\n\
             deployment:\n  served_model_name: {}\n  hf_model_handle: {}\n  extra_args: {}\n\
             evaluation:\n  tasks:\n    - name: gsm8k\n",
            serde_json::to_string(&model).unwrap(),
            serde_json::to_string(&handle).unwrap(),
            serde_json::to_string(&extra).unwrap(),
        );
        let sources = evalctl::diag::Sources::new();
        let loaded = evalctl::config::load_text(Path::new("hostile.yaml"), &text, &[], &sources, &|_| None)
            .unwrap_or_else(|f| panic!("{group}: {}", evalctl::diag::render_all(&f.diagnostics, &sources)));
        let command = loaded.config.deployment.command.clone().expect("a server command");
        let argv_out = c.root.join(format!("{group}.argv"));
        let status = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
            .env("ARGV_OUT", &argv_out)
            .env("PROC_ID", "0")
            .env("NODES_PER_INSTANCE", "1")
            .env("MASTER_IP", "127.0.0.1")
            .status()
            .unwrap();
        assert!(status.success(), "{group}: {command}");
        assert!(!pwned.exists(), "{group}: a value ran as a command: {command}");
        let argv: Vec<String> = std::fs::read(&argv_out)
            .unwrap_or_else(|_| panic!("{group}: the server did not start: {command}"))
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(argv.contains(&handle), "{group}: the model handle is one argument: {argv:?}");
        if group != "trtllm" {
            assert!(argv.contains(&model), "{group}: the model name is one argument: {argv:?}");
        }
        let tail = ["--max-model-len", "4096", "--chat-template", "a b", ";touch"];
        assert!(argv.windows(tail.len()).any(|w| w == tail), "{group}: extra_args are words: {argv:?}");
    }
}

/// Small files that expand without bound: every one gets a located error at
/// once, never an abort (a 2 KB config once asked for gigabytes).
#[test]
fn interpolation_is_bounded() {
    let c = Case::new("bounds");
    let head = "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\n\
                execution:\n  account: acct\n  output_dir: /shared/results\n\
                target:\n  api_endpoint:\n    url: http://host:8000/v1/chat/completions\n    model_id: m\n\
                evaluation:\n  tasks:\n    - name: gsm8k\n";
    let mut laughs = format!("{head}x:\n  l0: \"aaaaaaaaaa\"\n");
    for i in 1..10 {
        laughs.push_str(&format!("  l{i}: \"{}\"\n", format!("${{x.l{}}}", i - 1).repeat(10)));
    }
    let nested = format!("{head}z: \"{}a,b{}\"\n", "${oc.select:".repeat(5000), "}".repeat(5000));
    let mut chain = format!("{head}y:\n  k0: ${{y.k1}}\n");
    for i in 1..400 {
        chain.push_str(&format!("  k{i}: ${{y.k{}}}\n", i + 1));
    }
    chain.push_str("  k400: v\n");
    for (name, body, message) in [
        ("laughs", laughs, "expands to more than 1024 KiB"),
        ("nested", nested, "interpolations nested more than 32 deep"),
        ("chain", chain, "references chained more than 256 deep"),
    ] {
        let path = c.repo().join(format!("{name}.yaml"));
        std::fs::write(&path, body).unwrap();
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_evalctl")).arg("validate").arg(&path).output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{name} took {:?}", started.elapsed());
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(&format!("{}:", path.display())) && err.contains(message), "{name}: {err}");
    }
}

/// The hostile-config corpus folder, relative to the crate root.
const CORPUS: &str = "tests/hostile";
const MIN_CORPUS: usize = 60;
const CLASSES: [&str; 6] = ["inject", "names", "compose", "exhaust", "limits", "secrets"];

/// What a corpus case expects, from its header.
#[derive(Debug)]
struct Expected {
    exit: i32,
    class: String,
    /// `SOURCE:LINE:COL` and a message substring, in order.
    errors: Vec<(String, String)>,
}

fn expected(rel: &str, text: &str) -> Result<Expected, String> {
    let one = |name: &str| -> Result<String, String> {
        match corpus::directive(text, name).as_slice() {
            [v] => Ok((*v).to_owned()),
            _ => Err(format!("needs exactly one `# {name}:` line")),
        }
    };
    let exit = one("exit")?.parse::<i32>().map_err(|e| format!("`# exit:`: {e}"))?;
    let class = one("class")?;
    if !CLASSES.contains(&class.as_str()) {
        return Err(format!("class `{class}` is not one of {CLASSES:?}"));
    }
    let mut errors = vec![];
    for line in corpus::header(text) {
        let (spec, local) = if let Some(s) = line.strip_prefix("expect:") {
            (s.trim(), true)
        } else if let Some(s) = line.strip_prefix("expect-at:") {
            (s.trim(), false)
        } else {
            continue;
        };
        // `LINE:COL: MESSAGE`, or `SOURCE:LINE:COL: MESSAGE`.
        let (place, message) = spec.split_once(": ").ok_or_else(|| format!("`{spec}` has no message"))?;
        let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        let parts: Vec<&str> = place.rsplitn(3, ':').collect();
        let well_formed = match (local, parts.as_slice()) {
            (true, [col, line]) => numeric(col) && numeric(line),
            (false, [col, line, _]) => numeric(col) && numeric(line),
            _ => false,
        };
        if !well_formed || message.trim().is_empty() {
            return Err(format!("`{spec}` is not `{}LINE:COL: MESSAGE`", if local { "" } else { "SOURCE:" }));
        }
        let place = if local { format!("{rel}:{place}") } else { place.to_owned() };
        errors.push((place, message.trim().to_owned()));
    }
    match (exit, errors.is_empty()) {
        (0, true) | (1, false) => Ok(Expected { exit, class, errors }),
        (0, false) => Err("`exit: 0` with expected errors".into()),
        (1, true) => Err("`exit: 1` needs `# expect:` lines".into()),
        _ => Err(format!("exit {exit} is neither 0 nor 1")),
    }
}

/// Runs one case; describes every way it differs from its expectation.
fn check_hostile(rel: &str, scratch: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(corpus::root().join(rel)).map_err(|e| format!("cannot read: {e}"))?;
    let want = expected(rel, &text).map_err(|e| format!("malformed header: {e}"))?;
    let overrides = corpus::directive(&text, "override");
    let env = corpus::env_pairs(&text);
    let validate = corpus::evalctl(&["validate"], rel, &overrides, &env);
    let plan = corpus::evalctl(&["plan", "--offline"], rel, &overrides, &env);
    let mut problems = vec![];
    for (what, run) in [("validate", &validate), ("plan --offline", &plan)] {
        if run.code != Some(want.exit) {
            problems.push(format!("{what} exited {:?}, not {}", run.code, want.exit));
        }
        if run.took > Duration::from_secs(10) {
            problems.push(format!("{what} took {:?}", run.took));
        }
        if run.stderr.contains("panicked") || run.stderr.contains("overflowed its stack") {
            problems.push(format!("{what} crashed"));
        }
    }
    let (got, plan_got) = (validate.errors(), plan.errors());
    if got != plan_got {
        problems
            .push(format!("plan --offline reports other errors than validate:\n      {}", plan_got.join("\n      ")));
    }
    let matches = |(place, message): &(String, String), headline: &String| {
        headline.strip_prefix(&format!("{place}: error: ")).is_some_and(|m| m.contains(message.as_str()))
    };
    if got.len() != want.errors.len() || !want.errors.iter().zip(&got).all(|(w, g)| matches(w, g)) {
        let wanted: Vec<String> = want.errors.iter().map(|(p, m)| format!("{p}: error: ...{m}...")).collect();
        problems.push(format!(
            "errors differ\n    expected:\n      {}\n    actual:\n      {}",
            wanted.join("\n      "),
            if got.is_empty() { "(none)".to_owned() } else { got.join("\n      ") }
        ));
    }
    if want.exit == 0 && problems.is_empty() {
        let out = scratch.join(rel.replace('/', "_"));
        let out_s = out.display().to_string();
        let render = corpus::evalctl(&["render", "--out", &out_s], rel, &overrides, &env);
        if render.code != Some(0) {
            problems.push(format!("render failed: {}", render.stderr));
        }
        for script in std::fs::read_dir(&out).into_iter().flatten().flatten() {
            let path = script.path();
            if path.extension().is_some_and(|e| e == "sbatch") {
                let ok = Command::new("bash").arg("-n").arg(&path).status().is_ok_and(|s| s.success());
                if !ok {
                    problems.push(format!("{} is not valid bash", path.display()));
                }
            }
        }
    }
    if problems.is_empty() { Ok(want.class) } else { Err(problems.join("\n  ")) }
}

#[test]
fn hostile_corpus_cases_meet_their_expectations() {
    let (cases, others) = corpus::cases(CORPUS);
    let scratch = corpus::scratch("hostile-corpus");
    let mut failures: Vec<String> = others.iter().map(|o| format!("{o}: not NN-name.yaml or NN-name/")).collect();
    let mut per_class = std::collections::BTreeMap::new();
    for rel in &cases {
        match check_hostile(rel, &scratch) {
            Ok(class) => *per_class.entry(class).or_insert(0) += 1,
            Err(why) => failures.push(format!("{rel}:\n  {why}")),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(cases.len() >= MIN_CORPUS, "the corpus has {} cases, fewer than {MIN_CORPUS}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases do not match:\n\n{}\n",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    for class in CLASSES {
        assert!(per_class.contains_key(class), "no case of class `{class}`: {per_class:?}");
    }
}

#[test]
fn corpus_headers_are_read() {
    let ok = "# class: inject\n# exit: 1\n# expect: 3:5: bad `x`\n# expect-at: <-o #1>:1:4: no: task\nx: 1\n";
    let e = expected("t/01-x.yaml", ok).unwrap();
    assert_eq!(
        e.errors,
        [("t/01-x.yaml:3:5".to_owned(), "bad `x`".to_owned()), ("<-o #1>:1:4".into(), "no: task".into())]
    );
    for bad in [
        "# class: inject\n# exit: 0\n# expect: 3:5: m\n",
        "# class: inject\n# exit: 1\n",
        "# class: other\n# exit: 0\n",
        "# exit: 0\n",
        "# class: inject\n# exit: 1\n# expect: <-o #1>:1:1: m\n",
        "# class: inject\n# exit: 1\n# expect: 3: m\n",
        "# class: inject\n# exit: 1\n# expect-at: 3:4: m\n",
    ] {
        assert!(expected("t/01-x.yaml", bad).is_err(), "{bad}");
    }
}
