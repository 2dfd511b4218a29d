//! Secrets stay lazy: a config (or a command line) refers to them by name,
//! and their values reach only the secrets files `apply` writes next to the
//! jobs. Each case runs the real binary and asserts that no value appears
//! in scripts, messages or saved plans.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VALUE: &str = "sekrit-7f3a";

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let root = std::env::temp_dir().join(format!("evalctl-secrets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Dir(root)
    }

    /// A config with `extra` appended (top-level keys).
    fn config(&self, extra: &str) -> PathBuf {
        let path = self.0.join("evals.yaml");
        std::fs::write(
            &path,
            format!(
                "defaults:\n  - execution: slurm/default\n  - deployment: vllm\n  - _self_\n\
                 execution:\n  account: acct\n  output_dir: /shared/evals\n\
                 deployment:\n  checkpoint_path: /ckpt\n  served_model_name: m\n\
                 evaluation:\n  tasks:\n    - name: lm-evaluation-harness.gsm8k\n{extra}"
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn evalctl(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(args)
        .arg(config)
        .env("TOKEN", VALUE)
        .env("NO_COLOR", "1")
        .output()
        .expect("run evalctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn no_value(out: &Output) {
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains(VALUE), "a secret value leaked:\n{all}");
}

#[test]
fn a_secret_cannot_be_used_as_text_of_another_field() {
    let d = Dir::new("reference");
    for reference in ["${env_vars.PLAIN}", "${deployment.env_vars.TOKEN}", "${evaluation.env_vars.HF}"] {
        // The reference sits in `execution.sbatch_comment`, a header field.
        let cfg = d.config(&format!("env_vars:\n  PLAIN: {VALUE}\n  env_vars_ok: lit:x\n"));
        let body = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("  env_vars_ok: lit:x\n", "")
            .replace(
                "  output_dir: /shared/evals\n",
                &format!("  output_dir: /shared/evals\n  sbatch_comment: \"c {reference}\"\n"),
            )
            .replace("  served_model_name: m\n", "  served_model_name: m\n  env_vars:\n    TOKEN: ${oc.env:TOKEN}\n")
            .replace("evaluation:\n", "evaluation:\n  env_vars:\n    HF: TOKEN\n");
        std::fs::write(&cfg, &body).unwrap();
        let row = body.lines().position(|l| l.contains("sbatch_comment")).unwrap() + 1;
        for cmd in [&["validate"][..], &["plan", "--offline"]] {
            let out = evalctl(cmd, &cfg);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{reference} {cmd:?}: {err}");
            let want = format!(
                "evals.yaml:{row}:19: error: `{reference}` in `execution.sbatch_comment` refers to an environment variable"
            );
            assert!(err.contains(&want), "{reference}: {err}");
            assert_eq!(err.matches("error:").count(), 1, "reported once: {err}");
            no_value(&out);
        }
    }
}

#[test]
fn numbers_and_booleans_under_env_vars_are_kept_out_of_scripts() {
    let d = Dir::new("numbers");
    let cfg = d.config("env_vars:\n  PIN: 73141592\n  FLAG: true\n  SHOWN: lit:73141593\n");
    let out_dir = d.0.join("out");
    let out = evalctl(&["render", "--out", out_dir.to_str().unwrap()], &cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut scripts = String::new();
    let mut secrets = String::new();
    for e in std::fs::read_dir(&out_dir).unwrap() {
        let p = e.unwrap().path();
        let body = std::fs::read_to_string(&p).unwrap_or_default();
        if p.file_name().unwrap().to_string_lossy().ends_with(".secrets.env") {
            secrets += &body
        } else {
            scripts += &body
        }
    }
    assert!(!scripts.contains("73141592"), "a number in clear in a script");
    assert!(scripts.contains("73141593"), "a `lit:` value is visible");
    assert!(secrets.contains("export PIN=") && secrets.contains("export FLAG="), "{secrets}");
}

#[test]
fn a_value_given_with_dash_o_is_masked_in_messages() {
    let d = Dir::new("dash-o");
    let cfg = d.config("");
    // A bad variable name: the error quotes the override, masked.
    let out = evalctl(&["validate", "-o", &format!("env_vars.BAD-NAME={VALUE}")], &cfg);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not a valid environment variable name"), "{err}");
    assert!(err.contains(&format!("env_vars.BAD-NAME={}", "*".repeat(VALUE.len()))), "{err}");
    no_value(&out);
    // A value that fails interpolation.
    let out = evalctl(&["validate", "-o", &format!("deployment.env_vars.T={VALUE}${{nope}}")], &cfg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    no_value(&out);
}

#[test]
fn a_saved_plan_keeps_no_variable_values() {
    let d = Dir::new("saved");
    let cfg = d.config("");
    let saved = d.0.join("plan.json");
    let saved_arg = saved.to_str().unwrap().to_owned();
    let out =
        evalctl(&["plan", "--offline", "--out", &saved_arg, "-o", &format!("deployment.env_vars.TOKEN={VALUE}")], &cfg);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`deployment.env_vars.TOKEN` is given a value on the command line"), "{err}");
    assert!(err.contains("host:VAR"), "{err}");
    assert!(!saved.exists(), "nothing saved");
    assert!(text(&out.stdout).is_empty(), "refused before planning");
    no_value(&out);
    // Naming the source is fine, and the plan file holds the name only.
    for source in ["host:TOKEN", "${oc.env:TOKEN}", "lit:visible"] {
        let out = evalctl(
            &["plan", "--offline", "--out", &saved_arg, "-o", &format!("deployment.env_vars.TOKEN={source}")],
            &cfg,
        );
        assert_eq!(out.status.code(), Some(0), "{source}: {}", text(&out.stderr));
        let file = std::fs::read_to_string(&saved).unwrap();
        assert!(file.contains(&format!("deployment.env_vars.TOKEN={source}")) && !file.contains(VALUE), "{file}");
    }
}
