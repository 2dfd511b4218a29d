//! Small configs that try to exhaust memory, time or the stack: each gets a
//! located error and exit 1 (never an abort), from the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let root = std::env::temp_dir().join(format!("evalctl-exhaustion-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Dir(root)
    }

    fn write(&self, body: &str) -> PathBuf {
        let path = self.0.join("evals.yaml");
        std::fs::write(&path, format!("{HEAD}{body}")).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ten lines of a valid config; test bodies start at line 11.
const HEAD: &str = "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\n\
                    execution: {account: acct, output_dir: /shared/results}\n\
                    target:\n  api_endpoint: {url: 'http://host:8000/v1/chat/completions', model_id: m}\n\
                    evaluation:\n  tasks:\n    - name: lm-evaluation-harness.gsm8k\n";

fn validate(path: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalctl")).arg("validate").arg(path).args(args).output().expect("run evalctl")
}

fn refused(out: &Output, at: &str, message: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{at}: error: {message}")), "want {at}: {message}\n{err}");
    assert_eq!(err.matches("error:").count(), 1, "reported once:\n{err}");
}

#[test]
fn a_mapping_referenced_ten_times_per_level_is_bounded() {
    let d = Dir::new("maps");
    let mut body = "l0: {a: 1, b: 2}\n".to_owned();
    for i in 1..30 {
        body.push_str(&format!("l{i}:\n"));
        for k in 0..10 {
            body.push_str(&format!("  k{k}: ${{l{}}}\n", i - 1));
        }
    }
    let path = d.write(&body);
    // l4 holds 31,111 values; the budget runs out at l5's fifth copy of it.
    refused(&validate(&path, &[]), "evals.yaml:62:7", "references copy more than 200000 values in all (at `${l4}`)");
}

#[test]
fn nesting_through_aliases_is_bounded() {
    let d = Dir::new("aliases");
    let mut body = format!("a0: &a0 {}1{}\n", "[".repeat(200), "]".repeat(200));
    for i in 1..200 {
        body.push_str(&format!("a{i}: &a{i} {}*a{}{}\n", "[".repeat(200), i - 1, "]".repeat(200)));
    }
    let path = d.write(&body);
    refused(&validate(&path, &[]), "evals.yaml:12:209", "nesting too deep through this alias");
}

#[test]
fn an_override_key_of_ten_thousand_parts_is_refused() {
    let d = Dir::new("key");
    let path = d.write("");
    let key = vec!["a"; 10_000].join(".");
    refused(&validate(&path, &["-o", &format!("{key}=1")]), "<-o #1>:1:1", "override key has more than 64 parts");
    refused(&validate(&path, &["-o", &format!("~{key}")]), "<-o #1>:1:1", "override key has more than 64 parts");
}

#[test]
fn an_interpolation_budget_is_reported_once() {
    let d = Dir::new("budget");
    // Each level holds ten copies of the one before: l5 is 1,000,000
    // bytes, within the limit of one value; a hundred values of 1 MB each
    // pass the limit of all values at the 66th (line 11 + 1 + 6 + 65).
    let mut body = "x:\n  l0: \"aaaaaaaaaa\"\n".to_owned();
    for i in 1..6 {
        body.push_str(&format!("  l{i}: \"{}\"\n", format!("${{x.l{}}}", i - 1).repeat(10)));
    }
    for i in 0..100 {
        body.push_str(&format!("y{i}: \"a${{x.l5}}\"\n"));
    }
    let path = d.write(&body);
    refused(&validate(&path, &[]), "evals.yaml:83:6", "interpolation expands to more than 64 MiB in all");
}
