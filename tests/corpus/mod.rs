//! What the config-corpus tests share (`tests/hostile.rs`, `tests/agree.rs`):
//! finding a corpus's cases, reading the header comments that say how to run
//! them, and running the built binary on them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The crate root: case paths are relative to it, as messages show them.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cases of a corpus folder (relative to the crate root), sorted: every
/// `NN-name.yaml` file, and every `NN-name/` folder as its `config.yaml` (a
/// case that needs files of its own beside it). Other entries are returned
/// in `others` so a corpus can refuse them.
pub fn cases(dir: &str) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<(String, bool)> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    names.sort();
    let (mut found, mut others) = (vec![], vec![]);
    for (name, is_dir) in names {
        let numbered = name.len() > 3 && name.as_bytes()[..2].iter().all(u8::is_ascii_digit) && &name[2..3] == "-";
        match (numbered, is_dir) {
            (true, false) if name.ends_with(".yaml") => found.push(format!("{dir}/{name}")),
            (true, true) => found.push(format!("{dir}/{name}/config.yaml")),
            _ => others.push(format!("{dir}/{name}")),
        }
    }
    (found, others)
}

/// The header comment block of a case: its lines starting with `# `.
pub fn header(text: &str) -> impl Iterator<Item = &str> {
    text.lines().take_while(|l| l.starts_with('#')).map(|l| l.trim_start_matches('#').trim())
}

/// The values of a header directive (`override`, `env`, ...).
pub fn directive<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}:");
    header(text).filter_map(|l| l.strip_prefix(&prefix)).map(str::trim).collect()
}

/// One run of the binary.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Run {
    /// The headlines of its errors, in order: `SOURCE:LINE:COL: error: ...`
    /// (or `evalctl: error: ...` for an error without a place).
    pub fn errors(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter(|l| {
                l.split_once(": error: ")
                    .is_some_and(|(place, _)| !place.starts_with(' ') && !place.contains(" | ") && !place.is_empty())
            })
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `evalctl ARGS CONFIG -o ...` from the crate root with only the
/// environment variables given (and PATH).
pub fn evalctl(args: &[&str], config: &str, overrides: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evalctl"));
    c.args(args).arg(config).current_dir(root()).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    for o in overrides {
        c.arg("-o").arg(o);
    }
    c.envs(env.iter().copied());
    let started = Instant::now();
    let out = c.output().expect("run evalctl");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// `# env: NAME=value` lines as pairs.
pub fn env_pairs(text: &str) -> Vec<(&str, &str)> {
    directive(text, "env").into_iter().filter_map(|e| e.split_once('=')).collect()
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evalctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
