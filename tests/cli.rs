//! The binary as users run it: exit codes, stdout vs stderr, output shapes.

use std::process::{Command, Output};

fn evalctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HF_TOKEN")
        .output()
        .expect("run evalctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_examples_succeeds() {
    for ex in ["examples/slurm_llama_3_1_8b_instruct.yaml", "examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml"] {
        let out = evalctl(&["validate", ex]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with(&format!("{ex}: valid (")), "{}", text(&out.stdout));
        assert_eq!(text(&out.stderr), "");
    }
}

#[test]
fn examples_carry_the_schema_modeline() {
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "yaml") {
            let t = std::fs::read_to_string(e.path()).unwrap();
            assert!(
                t.starts_with("# yaml-language-server: $schema=../schemas/evalctl.draft-07.schema.json\n"),
                "{}",
                e.path().display()
            );
        }
    }
}

#[test]
fn validate_reports_all_errors_with_locations_and_exit_1() {
    let out = evalctl(&[
        "validate",
        "examples/slurm_llama_3_1_8b_instruct.yaml",
        "-o",
        "execution.num_nodes=3",
        "-o",
        "execution.num_instances=2",
        "-o",
        "execution.walltime=25h",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains("<-o #3>:1:20: error: `execution.walltime` is not a Slurm time: \"25h\""), "{err}");
    assert!(
        err.contains(
            "<-o #2>:1:25: error: `execution.num_nodes` (3) must be a multiple of `execution.num_instances` (2)"
        ),
        "{err}"
    );
    assert!(err.contains("evalctl: 2 errors"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_config_is_a_clear_error() {
    let out = evalctl(&["validate", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "evalctl: error: cannot read config `does/not/exist.yaml`: no such file\n");
}

#[test]
fn bad_arguments_exit_1_and_help_exits_0() {
    assert_eq!(evalctl(&["validate", "--bogus"]).status.code(), Some(1));
    let help = evalctl(&["validate", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Example: evalctl validate"));
}

#[test]
fn tasks_lists_the_catalog() {
    let out = evalctl(&["tasks", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 421);
    let out = evalctl(&["tasks", "hellaswag"]);
    let t = text(&out.stdout);
    assert!(t.starts_with("TASK "), "{t}");
    let row: Vec<&str> = t.lines().find(|l| l.starts_with("hellaswag ")).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            "hellaswag",
            "lm-evaluation-harness",
            "completions",
            "nvcr.io/nvidia/eval-factory/lm-evaluation-harness:26.03"
        ]
    );
    let none = evalctl(&["tasks", "no-such-task-xyz"]);
    assert_eq!(none.status.code(), Some(1));
}

#[test]
fn schema_command_prints_the_committed_schemas() {
    let out = evalctl(&["schema"]);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/evalctl.schema.json")).unwrap();
    assert_eq!(text(&out.stdout), committed);
    let out = evalctl(&["schema", "--draft", "07"]);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/evalctl.draft-07.schema.json")).unwrap();
    assert_eq!(text(&out.stdout), committed);
}

#[test]
fn migrate_prints_the_new_dialect() {
    let out = evalctl(&["migrate", "tests/fixtures/old_dialect.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(
        t.contains(
            "evaluation:\n  env_vars:\n    HF_TOKEN: host:HF_TOKEN\n    API_TOKEN: host:API_TOKEN\n    MODE: lit:fast\n"
        ),
        "{t}"
    );
    assert!(text(&out.stderr).contains("warning: `MODE` becomes the literal `lit:` value"));
}

/// A fresh folder for files a test lets `migrate -i` rewrite.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("evalctl-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn migrate_in_place_refuses_and_leaves_the_file_untouched() {
    let dir = scratch("migrate-refuse");
    let file = dir.join("flow.yaml");
    let src =
        "execution: {env_vars: {deployment: {TOKEN: '${oc.env:TOKEN}'}}, account: x}\ndeployment:\n  type: vllm\n";
    std::fs::write(&file, src).unwrap();
    let f = file.to_str().unwrap();
    for args in [vec!["migrate", "-i", f], vec!["migrate", f]] {
        let out = evalctl(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "{f}:1:12: error: cannot migrate safely: flow style (`{{...}}` or `[...]`) where `execution.env_vars` must change; the file was left untouched\n"
            )),
            "{err}"
        );
        assert_eq!(text(&out.stdout), "");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), src);
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file is left");
    // `\r`-only line endings: refused at the right line, snippet included.
    let cr = dir.join("cr-flow.yaml");
    std::fs::write(&cr, "deployment:\r  type: vllm\rexecution: {env_vars: {deployment: {A: b}}}\r").unwrap();
    let out = evalctl(&["migrate", "-i", cr.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{}:3:12: error: cannot migrate safely: flow style", cr.display())), "{err}");
    assert!(err.contains("\n3 | execution: {env_vars: {deployment: {A: b}}}\n"), "{err}");
    // Line endings of every kind: no panic, and they are kept.
    let cr = dir.join("cr.yaml");
    std::fs::write(&cr, "evaluation:\r  env_vars:\r    HF: HF_TOKEN\r").unwrap();
    let out = evalctl(&["migrate", cr.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "evaluation:\r  env_vars:\r    HF: host:HF_TOKEN\r");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn migrate_in_place_replaces_the_file_atomically_keeping_its_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = scratch("migrate-atomic");
    let file = dir.join("old.yaml");
    std::fs::write(&file, "evaluation:\r\n  env_vars:\r\n    HF: HF_TOKEN\r\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.join("link.yaml");
    std::os::unix::fs::symlink("old.yaml", &link).unwrap();
    let before = std::fs::metadata(&file).unwrap().ino();
    let out = evalctl(&["migrate", "-i", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 value(s) rewritten"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "evaluation:\r\n  env_vars:\r\n    HF: host:HF_TOKEN\r\n");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_ne!(meta.ino(), before, "a new file renamed into place, not the old one truncated");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["link.yaml", "old.yaml"], "no temporary file is left");
    // Already migrated: the file is not written again.
    let again = std::fs::metadata(&file).unwrap().ino();
    let out = evalctl(&["migrate", "-i", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::metadata(&file).unwrap().ino(), again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = evalctl(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("validate"), "{shell}");
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands = [
        "validate",
        "render",
        "graph",
        "plan",
        "apply",
        "diff",
        "status",
        "logs",
        "cancel",
        "schema",
        "tasks",
        "migrate",
        "completions",
    ];
    for c in commands {
        let out = evalctl(&[c, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{c}");
        assert!(text(&out.stdout).contains("Example: evalctl "), "`{c} --help` shows an example");
    }
    for c in ["unlock", "show"] {
        let out = evalctl(&["state", c, "--help"]);
        assert!(text(&out.stdout).contains("Example: evalctl state "), "`state {c} --help` shows an example");
    }
}

/// Colour follows the stream written to and the usual switches: none in a
/// pipe, forced by `CLICOLOR_FORCE`, and `NO_COLOR` / `--no-color` win.
/// Machine formats never carry escapes.
#[test]
fn colour_follows_the_stream_and_the_switches() {
    let ex = "examples/slurm_llama_3_1_8b_instruct.yaml";
    let run = |env: &[(&str, &str)], extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_evalctl"));
        c.args(["plan", "--offline", ex]).args(extra).current_dir(env!("CARGO_MANIFEST_DIR"));
        c.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE").env_remove("CLICOLOR");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run evalctl");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout).contains('\x1b')
    };
    assert!(!run(&[], &[]), "a pipe gets plain text");
    assert!(run(&[("CLICOLOR_FORCE", "1")], &[]), "CLICOLOR_FORCE colours a pipe");
    assert!(!run(&[("CLICOLOR_FORCE", "1")], &["--no-color"]), "--no-color wins");
    assert!(!run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[]), "NO_COLOR wins");
    for format in ["json", "markdown"] {
        assert!(!run(&[("CLICOLOR_FORCE", "1")], &["--format", format]), "{format} has no escapes");
    }
}

/// `--replace` of a unit the config does not have is an error naming the
/// units, not a plan that silently does nothing.
#[test]
fn replace_of_an_unknown_unit_is_an_error() {
    let out = evalctl(&["plan", "--offline", "examples/slurm_llama_3_1_8b_instruct.yaml", "--replace", "helaswag"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("--replace names no unit of stack") && err.contains("`helaswag`"), "{err}");
    assert!(err.contains("units: hellaswag"), "{err}");
    let ok = evalctl(&["plan", "--offline", "examples/slurm_llama_3_1_8b_instruct.yaml", "--replace", "hellaswag"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
}

/// `compare`'s bad inputs are errors before any connection: a policy at its
/// line, a ref that is not a commit, a path not at that ref.
#[test]
fn compare_refuses_bad_policies_and_refs_before_connecting() {
    let dir = std::env::temp_dir().join(format!("evalctl-cli-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("gate.yaml");
    std::fs::write(&policy, "version: 1\nrules:\n  - task: gsm8k\n    max_regression: -1\n").unwrap();
    let ex = "examples/slurm_llama_3_1_8b_instruct.yaml";
    let out = evalctl(&["compare", ex, ex, "--gate", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("gate.yaml:4:21: error: `max_regression` is -1: it must be 0 or more"), "{err}");
    let out = evalctl(&["compare", "no-such-ref-xyz:examples/slurm_llama_3_1_8b_instruct.yaml", ex]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`no-such-ref-xyz` is not a commit of the repository"), "{}", text(&out.stderr));
    let out = evalctl(&["compare", "HEAD:examples/not-there.yaml", ex]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("examples/not-there.yaml does not exist at `HEAD`"), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_checks_every_config_and_its_arguments_before_connecting() {
    let dir = scratch("report");
    let page = dir.join("report.html");
    let p = page.to_str().unwrap();
    let ex = "examples/slurm_llama_3_1_8b_instruct.yaml";
    // A bad second config: refused before the first stack's cluster is tried.
    let out = evalctl(&["report", ex, "does/not/exist.yaml", "--out", p]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "evalctl: error: cannot read config `does/not/exist.yaml`: no such file\n");
    assert!(!page.exists());
    // --out is required.
    let out = evalctl(&["report", ex]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--out <FILE>"), "{}", text(&out.stderr));
    // A SOURCE_DATE_EPOCH that is not a time.
    let out = Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(["report", ex, "--out", p])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SOURCE_DATE_EPOCH", "soon")
        .output()
        .expect("run evalctl");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "evalctl: error: SOURCE_DATE_EPOCH must be a number of seconds since 1970, not \"soon\"\n"
    );
    assert!(!page.exists());
    let help = evalctl(&["report", "--help"]);
    assert!(text(&help.stdout).contains("Example: evalctl report"), "{}", text(&help.stdout));
}

/// `export` refuses what it cannot do before touching the cluster: no
/// destination, options of another destination, no tracking URI.
#[test]
fn export_names_what_is_missing_before_reaching_the_cluster() {
    let ex = "examples/slurm_llama_3_1_8b_instruct.yaml";
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_evalctl"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("MLFLOW_TRACKING_URI")
            .env("HF_TOKEN", "x")
            .output()
            .expect("run evalctl");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "");
        text(&out.stderr)
    };
    let e = run(&["export", ex]);
    assert!(e.contains("name where to export: --to mlflow|json|csv"), "{e}");
    let e = run(&["export", ex, "--to", "csv", "--tracking-uri", "http://m"]);
    assert!(e.contains("are options of --to mlflow"), "{e}");
    let e = run(&["export", ex, "--to", "mlflow"]);
    assert!(e.contains("no MLflow tracking URI: pass --tracking-uri"), "{e}");
    let e = run(&["export", ex, "--to", "mlflow", "--tracking-uri", "ftp://u:s3cret@h"]);
    assert!(e.contains("`ftp://***@h`") && !e.contains("s3cret"), "{e}");
}
