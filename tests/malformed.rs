//! The malformed-config corpus under `tests/malformed/`: every case file
//! states, in its header, the errors evalctl must report for it (location and
//! message, in order), the `-o` overrides to pass and the only environment
//! variables visible while it loads.
//!
//! Header lines (the comment block the file starts with):
//!
//! ```text
//! # expect: LINE:COL: MESSAGE-SUBSTRING          an error in the case file itself
//! # expect-at: SOURCE:LINE:COL: MESSAGE-SUBSTRING an error in another source
//!                                                (`<-o #1>`, `<builtin>/deployment/vllm.yaml`, ...)
//! # override: key.path=value                     passed as `-o key.path=value`
//! # env: NAME=value                              visible to `${oc.env:NAME}`
//! ```
//!
//! Other comment lines are free text. A config group folder beside the cases
//! (`tests/malformed/deployment/`) holds user group options some cases use.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use evalctl::config;
use evalctl::diag::{Diagnostic, Sources};

/// The corpus folder, relative to the crate root (as error messages show it).
const DIR: &str = "tests/malformed";
const MIN_CASES: usize = 45;

/// One expected error: where (`SOURCE:LINE:COL`) and part of its message.
#[derive(Debug)]
struct Expect {
    location: String,
    message: String,
}

impl Expect {
    fn show(&self) -> String {
        format!("{}: error: ...{}...", self.location, self.message)
    }

    fn matches(&self, headline: &str) -> bool {
        headline.strip_prefix(&format!("{}: error: ", self.location)).is_some_and(|msg| msg.contains(&self.message))
    }
}

/// A case file, its header read.
#[derive(Debug)]
struct Case {
    /// Path relative to the crate root, e.g. `tests/malformed/03-bad-walltime.yaml`.
    rel: String,
    text: String,
    expects: Vec<Expect>,
    overrides: Vec<String>,
    env: Vec<(String, String)>,
}

/// Splits `SOURCE:LINE:COL: MESSAGE` into a checked location and the message.
fn split_location(spec: &str) -> Result<(String, String), String> {
    let (location, message) = spec.split_once(": ").ok_or_else(|| format!("`{spec}` is not `LINE:COL: MESSAGE`"))?;
    let mut parts = location.rsplitn(3, ':');
    let col = parts.next().unwrap_or_default();
    let line = parts.next().unwrap_or_default();
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !numeric(line) || !numeric(col) {
        return Err(format!("`{location}` does not end in `LINE:COL`"));
    }
    let message = message.trim_end();
    if message.is_empty() {
        return Err(format!("`{spec}` has no message"));
    }
    Ok((location.to_owned(), message.to_owned()))
}

fn parse_case(rel: &str, text: &str) -> Result<Case, String> {
    let mut case = Case { rel: rel.to_owned(), text: text.to_owned(), expects: vec![], overrides: vec![], env: vec![] };
    let mut in_header = true;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if !line.starts_with('#') {
            in_header = false;
            continue;
        }
        let directive =
            ["# expect:", "# expect-at:", "# override:", "# env:"].into_iter().find(|d| line.starts_with(d));
        let Some(directive) = directive else {
            continue;
        };
        if !in_header {
            return Err(format!("line {line_no}: `{directive}` after the header comment block"));
        }
        let rest = line[directive.len()..].trim();
        match directive {
            "# expect:" => {
                let (loc, message) = split_location(rest).map_err(|e| format!("line {line_no}: {e}"))?;
                if loc.matches(':').count() != 1 {
                    return Err(format!(
                        "line {line_no}: `# expect:` takes `LINE:COL`; use `# expect-at:` for another source"
                    ));
                }
                case.expects.push(Expect { location: format!("{rel}:{loc}"), message });
            }
            "# expect-at:" => {
                let (location, message) = split_location(rest).map_err(|e| format!("line {line_no}: {e}"))?;
                if location.matches(':').count() < 2 {
                    return Err(format!("line {line_no}: `# expect-at:` takes `SOURCE:LINE:COL`"));
                }
                case.expects.push(Expect { location, message });
            }
            "# override:" => case.overrides.push(rest.to_owned()),
            _ => {
                let (name, value) =
                    rest.split_once('=').ok_or_else(|| format!("line {line_no}: `# env:` takes NAME=value"))?;
                case.env.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    if case.expects.is_empty() {
        return Err("no `# expect:` or `# expect-at:` line".into());
    }
    Ok(case)
}

/// Every `NN-name.yaml` of the corpus folder, sorted by name.
fn case_files(root: &Path) -> Vec<String> {
    let dir = root.join(DIR);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

fn is_case_name(name: &str) -> bool {
    // Two or more digits (the corpus outgrew 99 cases), a dash, a name.
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    digits >= 2 && name[digits..].starts_with('-') && name.len() > digits + "-.yaml".len() && name.ends_with(".yaml")
}

/// Loads a case; returns the headlines of its errors, or why it could not be
/// checked (it loaded, or evalctl panicked).
fn run_case(case: &Case) -> Result<Vec<String>, String> {
    let sources = Sources::new();
    let env = |name: &str| case.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        config::load_text(Path::new(&case.rel), &case.text, &case.overrides, &sources, &env)
    }))
    .map_err(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        format!("evalctl panicked: {what}")
    })?;
    let failed = match loaded {
        Ok(l) => {
            return Err(format!("the config loaded without errors ({} warning(s))", l.warnings.len()));
        }
        Err(f) => f,
    };
    let errors: Vec<&Diagnostic> = failed.diagnostics.iter().filter(|d| d.is_error()).collect();
    for d in &failed.diagnostics {
        let rendered =
            catch_unwind(AssertUnwindSafe(|| d.render(&sources))).unwrap_or_else(|_| "rendering panicked".into());
        if rendered.contains("panicked") {
            return Err(format!("rendering mentions a panic:\n{rendered}"));
        }
    }
    Ok(errors.iter().map(|d| d.headline(&sources)).collect())
}

/// Compares a case's errors with its expectations; describes any mismatch.
fn check(case: &Case) -> Option<String> {
    let actual = match run_case(case) {
        Ok(a) => a,
        Err(why) => return Some(why),
    };
    let mut problems = vec![];
    if actual.len() != case.expects.len() {
        problems.push(format!("expected {} error(s), got {}", case.expects.len(), actual.len()));
    }
    for (i, (e, a)) in case.expects.iter().zip(&actual).enumerate() {
        if !e.matches(a) {
            problems.push(format!("error #{} differs", i + 1));
        }
    }
    if problems.is_empty() {
        return None;
    }
    let mut out = problems.join("; ");
    out.push_str("\n    expected:");
    for e in &case.expects {
        let _ = write!(out, "\n      {}", e.show());
    }
    out.push_str("\n    actual:");
    for a in &actual {
        let _ = write!(out, "\n      {a}");
    }
    if actual.is_empty() {
        out.push_str("\n      (no errors)");
    }
    Some(out)
}

#[test]
fn malformed_configs_report_the_expected_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Case paths are relative to the crate root (stable messages); user
    // config groups beside the cases are found relative to it too.
    std::env::set_current_dir(root).expect("enter the crate root");
    let names = case_files(root);
    let mut failures: Vec<String> = vec![];
    let mut cases = 0;
    for name in &names {
        let rel = format!("{DIR}/{name}");
        if !is_case_name(name) {
            failures.push(format!("{rel}: not named NN-short-name.yaml"));
            continue;
        }
        cases += 1;
        let text = match std::fs::read_to_string(root.join(&rel)) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{rel}: cannot read: {e}"));
                continue;
            }
        };
        let case = match parse_case(&rel, &text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{rel}: malformed header: {e}"));
                continue;
            }
        };
        if let Some(why) = check(&case) {
            failures.push(format!("{rel}: {why}"));
        }
    }
    assert!(cases >= MIN_CASES, "the corpus has {cases} cases, fewer than {MIN_CASES}");
    assert!(
        failures.is_empty(),
        "{} of {cases} malformed-config cases do not match:\n\n{}\n",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn headers_are_parsed() {
    let text = "# A comment.\n# expect: 3:5: bad `x`: really\n# expect-at: <-o #1>:1:4: no task\n# override: a.b=c=d\n# env: HOME=/h=1\nx: 1\n# expect: 9:9: ignored? no, rejected\n";
    let err = parse_case("t/01-x.yaml", text).unwrap_err();
    assert!(err.contains("after the header"), "{err}");
    let case = parse_case("t/01-x.yaml", &text[..text.find("x: 1").unwrap()]).unwrap();
    assert_eq!(case.expects[0].location, "t/01-x.yaml:3:5");
    assert_eq!(case.expects[0].message, "bad `x`: really");
    assert_eq!(case.expects[1].location, "<-o #1>:1:4");
    assert_eq!(case.overrides, ["a.b=c=d"]);
    assert_eq!(case.env, [("HOME".to_owned(), "/h=1".to_owned())]);
    assert!(case.expects[0].matches("t/01-x.yaml:3:5: error: bad `x`: really bad"));
    assert!(!case.expects[0].matches("t/01-x.yaml:3:55: error: bad `x`: really"));
    assert!(!case.expects[0].matches("t/01-x.yaml:3:5: warning: bad `x`: really"));
    assert!(parse_case("t/01-x.yaml", "# expect: 3: oops\n").is_err());
    assert!(parse_case("t/01-x.yaml", "# expect: <-o #1>:1:1: m\n").is_err());
    assert!(parse_case("t/01-x.yaml", "a: 1\n").is_err());
    assert!(is_case_name("07-dup.yaml") && !is_case_name("7-dup.yaml"));
}
