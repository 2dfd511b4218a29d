//! Configs written by an attacker (a pull request): what evalctl may read.
//!
//! CI runs `plan --format markdown` on a PR's config and posts the output,
//! so a config that could make evalctl read a file of the CI runner would
//! publish it. Composition stays inside the config's own folder tree, only
//! regular files are read, and a size limit holds. Each case runs the real
//! binary and asserts the exit code, where the error points, its message,
//! and that nothing of the outside file appears anywhere in the output.

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
