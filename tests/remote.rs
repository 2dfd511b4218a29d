//! The programs evalctl sends to a login node: a golden snapshot of each for
//! a small fixed plan, shellcheck-clean, and the apply program run in bash
//! against stand-in Slurm commands, whose state file must be exactly the
//! state apply records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use evalctl::config;
use evalctl::diag::Sources;
use evalctl::plan::{self, Action, Observation};
use evalctl::remote::submit::{self, Inputs, SecretValues};
use evalctl::remote::{Program, Replies, Reply, cancel, lock, logs, refresh};
use evalctl::render::{self, Rendered};
use evalctl::state::{Observed, State};

mod common;
use common::{FAKE_SLURM, run_with_fakes};

const CONFIG: &str = "examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml";
const LOCK_ID: &str = "0000abcd00001234";

fn render_at(output_dir: &str) -> Rendered {
    let sources = Sources::new();
    let overrides = vec!["execution.topology=shared".to_owned(), format!("execution.output_dir={output_dir}")];
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(CONFIG)).unwrap();
    let loaded = config::load_text(Path::new(CONFIG), &text, &overrides, &sources, &|_| None)
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let (graph, _) = evalctl::graph::build(&loaded).unwrap();
    render::render(&loaded, &graph).unwrap_or_else(|d| panic!("{}", evalctl::diag::render_all(&d, &sources)))
}

fn lock_info() -> lock::LockInfo {
    lock::LockInfo {
        id: LOCK_ID.into(),
        who: "alice".into(),
        host: "laptop".into(),
        pid: 42,
        when: 1_700_000_000,
        command: "evalctl apply 'it''s'".into(),
    }
}

/// A plan over `rendered` exercising every action the apply program handles:
/// the first unit is replaced (two live jobs), the second updated, the rest
/// created, and a unit gone from the config is cancelled.
fn with_inputs<T>(rendered: &Rendered, f: impl FnOnce(&Inputs<'_>) -> T) -> T {
    let mut state = State::new(&rendered.stack);
    state.serial = 3;
    state.created = 1_600_000_000;
    state.units.insert("gone".into(), Default::default());
    let seen =
        plan::Seen { observations: BTreeMap::new(), state, target: "local".into(), offline: false, notes: vec![] };
    let planned = plan::make(rendered, 3, &[], &plan::Targets::default(), seen);
    let mut plan = planned.plan.clone();
    assert!(plan.changes.len() >= 3, "{:?}", plan.changes);
    plan.changes[0].action = Action::Replace;
    plan.changes[0].cancel_jobs = evalctl::jobid::jobs([12, 11]);
    plan.changes[1].action = Action::Update;
    plan.changes[1].observed = Observed::Running;
    let mut gone = plan.changes[0].clone();
    gone.unit = "gone".into();
    gone.action = Action::Cancel;
    gone.cancel_jobs = evalctl::jobid::jobs([7]);
    plan.changes.retain(|c| c.unit != "gone");
    plan.changes.push(gone);
    let dir = planned.units[0].jobs[0].dir.clone();
    let secrets: SecretValues =
        BTreeMap::from([((dir, "eval".to_owned()), vec![("HF_TOKEN".to_owned(), "s3cr'et $(x)".to_owned())])]);
    let inputs = Inputs {
        plan: &plan,
        rendered,
        units: &planned.units,
        observations: &planned.observations,
        state: &planned.state,
        secrets: &secrets,
        lock_id: LOCK_ID,
        now: 1_700_000_000,
        max_array_size: None,
    };
    f(&inputs)
}

/// Every program, by name, for a stack under `output_dir`.
fn programs(rendered: &Rendered) -> Vec<(&'static str, Program)> {
    let (dir, stack) = (rendered.stack_dir.as_str(), rendered.stack.as_str());
    let (a, b) = ("gsm8k".to_owned(), "unit with 'quotes'".to_owned());
    let running =
        Observation { live_jobs: evalctl::jobid::jobs([12, 11]), observed: Observed::Running, ..Default::default() };
    let pending =
        Observation { live_jobs: evalctl::jobid::jobs([21]), observed: Observed::Pending, ..Default::default() };
    vec![
        ("refresh", refresh::program(dir, stack, 0)),
        (
            "refresh_detail",
            refresh::detail_program(dir, refresh::Detail::Status).then(refresh::program(dir, stack, 1_700_000_000)),
        ),
        (
            "lock_and_refresh",
            lock::lock_program(dir, &lock_info(), Some("dead0001")).then(refresh::program(dir, stack, 0)),
        ),
        ("unlock", lock::unlock_program(dir, LOCK_ID)),
        ("unlock_unknown", lock::unlock_program(dir, lock::UNKNOWN_HOLDER)),
        ("cancel", cancel::program(dir, &[(&a, &running), (&b, &pending)], LOCK_ID)),
        ("logs_list", logs::list_program(dir, &["pack.gsm8k", "gsm8k"], 12.into())),
        (
            "logs_fetch",
            logs::fetch_program(dir, &[("pack.gsm8k/slurm-12.out".into(), 0), ("gsm8k/server-12-a b.log".into(), 99)]),
        ),
        ("apply", with_inputs(rendered, |inp| submit::program(inp).program)),
        ("apply_second_stage", with_inputs(rendered, |inp| submit::program(inp).second)),
    ]
}

/// A program with each here-document's body, and each long single-quoted
/// word (file contents), replaced by its size.
fn elide_data(text: &str) -> String {
    let mut out = String::new();
    let mut until: Option<String> = None;
    let mut size = 0;
    for line in elide_quoted(text).lines() {
        if let Some(delim) = &until {
            if line == delim {
                out.push_str(&format!("<{size} bytes>\n{line}\n"));
                until = None;
            } else {
                size += line.len() + 1;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if let Some(i) = line.find("<<'") {
            until = line[i + 3..].split('\'').next().map(str::to_owned);
            size = 0;
        }
    }
    out
}

/// `NAME='…'` words of more than 80 bytes, as `NAME=<N bytes>`.
fn elide_quoted(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("='") {
        out.push_str(&rest[..i + 1]);
        let mut word = String::new();
        let mut tail = &rest[i + 1..];
        // Quoted pieces joined by `\'`: `'a'\''b'` is `a'b`.
        while let Some(body) = tail.strip_prefix('\'') {
            let end = body.find('\'').expect("a closed quote");
            word.push_str(&body[..end]);
            tail = &body[end + 1..];
            match tail.strip_prefix("\\'") {
                Some(t) if t.starts_with('\'') => {
                    word.push('\'');
                    tail = t;
                }
                _ => break,
            }
        }
        let quoted = &rest[i + 1..rest.len() - tail.len()];
        if word.len() > 80 {
            out.push_str(&format!("<{} bytes>", word.len()));
        } else {
            out.push_str(quoted);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[test]
fn snapshots() {
    let r = render_at("/scratch/evals");
    for (name, p) in programs(&r) {
        insta::assert_snapshot!(name, elide_data(p.text()));
    }
    insta::assert_snapshot!("prelude", evalctl::remote::protocol::PRELUDE.0);
}

#[test]
fn shellcheck_finds_nothing() {
    let dir = std::env::temp_dir().join(format!("evalctl-remote-shellcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = render_at("/scratch/evals");
    let files: Vec<PathBuf> = programs(&r)
        .into_iter()
        .map(|(name, p)| {
            let f = dir.join(format!("{name}.sh"));
            std::fs::write(&f, format!("#!/bin/bash\n{}", p.full_text())).unwrap();
            f
        })
        .collect();
    let out = Command::new("shellcheck").args(["-s", "bash"]).args(&files).output().unwrap_or_else(|e| {
        panic!("shellcheck is needed to run this test ({e}); scripts/test.sh installs it (apt-get install shellcheck)")
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Stand-ins for the Slurm commands the apply program calls: sbatch hands
/// out ids from 101 (kept in a file), the others record their arguments.
/// A fresh directory `evalctl-remote-<name>-<pid>` with `fake/` for the
/// stand-ins, the example rendered under `out/` and its stack lock held
/// by [`lock_info`]: (directory, fake, rendered, lock file).
fn locked_stack(name: &str) -> (PathBuf, PathBuf, Rendered, PathBuf) {
    let tmp = std::env::temp_dir().join(format!("evalctl-remote-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let fake = tmp.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    let r = render_at(tmp.join("out").to_str().unwrap());
    let lock_file = Path::new(&r.stack_dir).join(".evalctl/lock");
    std::fs::create_dir_all(lock_file.parent().unwrap()).unwrap();
    std::fs::write(&lock_file, serde_json::to_string(&lock_info()).unwrap()).unwrap();
    (tmp, fake, r, lock_file)
}

#[test]
fn the_state_written_is_the_state_recorded() {
    let (tmp, fake, r, lock_file) = locked_stack("apply");
    with_inputs(&r, |inp| {
        let prog = submit::program(inp);
        let out = run_with_fakes(&prog.program.full_text(), &fake, FAKE_SLURM);
        let replies = Replies::from_stdout(String::from_utf8(out.stdout).unwrap());
        let outcome = submit::outcome(&replies);
        assert_eq!(outcome.error, None, "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!outcome.submitted.is_empty());
        assert_eq!(outcome.cancelled, [12, 11, 7]);
        let written = std::fs::read_to_string(Path::new(&r.stack_dir).join(".evalctl/state.json")).unwrap();
        let recorded = submit::recorded_state(inp, &prog.submitting, &outcome);
        assert_eq!(written, recorded.to_text());
        assert_eq!(State::parse(&written).unwrap(), recorded);
        assert!(!lock_file.exists(), "apply drops the lock");
        let secrets = std::fs::read_dir(Path::new(&inp.units[0].jobs[0].dir).join("secrets")).unwrap().count();
        assert_eq!(secrets, 1);
        let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
        assert!(calls.starts_with("scancel 12 11 7\nscontrol release 101,"), "{calls}");
    });
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A submission that fails stops every submitter: the jobs this apply had
/// submitted are cancelled, no state is written and the lock is dropped.
#[test]
fn a_failed_sbatch_cancels_what_was_submitted() {
    let (tmp, fake, r, lock_file) = locked_stack("failed");
    // The third call fails, the others hand out ids.
    let failing = r#"exec 9>>"$EVALCTL_FAKE/lock"; flock 9; n=$(( $(cat "$EVALCTL_FAKE/next" 2>/dev/null || echo 100) + 1 )); echo "$n" >"$EVALCTL_FAKE/next"; if [ "$n" -eq 103 ]; then echo "sbatch: error: Batch job submission failed: Invalid account" >&2; exit 1; fi; echo "$n""#;
    let fakes: Vec<(&str, &str)> =
        FAKE_SLURM.iter().copied().filter(|(n, _)| *n != "sbatch").chain([("sbatch", failing)]).collect();
    with_inputs(&r, |inp| {
        let prog = submit::program(inp);
        let out = run_with_fakes(&prog.program.full_text(), &fake, &fakes);
        let replies = Replies::from_stdout(String::from_utf8(out.stdout).unwrap());
        let outcome = submit::outcome(&replies);
        let error = outcome.error.clone().unwrap_or_default();
        assert!(error.contains("failed: sbatch: error: Batch job submission failed: Invalid account"), "{error}");
        let own: Vec<evalctl::jobid::JobId> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::CancelledOwn(ids) => Some(ids.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let issued = std::fs::read_to_string(fake.join("next")).unwrap().trim().parse::<u64>().unwrap();
        let mut expected: Vec<u64> = (101..=issued).filter(|id| *id != 103).collect();
        let mut cancelled = own.clone();
        cancelled.sort();
        expected.sort();
        assert_eq!(cancelled, expected, "every id handed out but the failed one is cancelled");
        let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
        assert!(!calls.contains("scontrol release"), "{calls}");
        assert!(!Path::new(&r.stack_dir).join(".evalctl/state.json").exists());
        assert!(!lock_file.exists(), "apply drops the lock");
        let left: Vec<_> =
            std::fs::read_dir(lock_file.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "the work files are removed: {left:?}");
    });
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn refresh_reads_a_hostile_stack_directory() {
    let tmp = std::env::temp_dir().join(format!("evalctl-remote-refresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let unit = "a b\nEVALCTL end";
    std::fs::create_dir_all(tmp.join(unit)).unwrap();
    std::fs::write(tmp.join(unit).join("status"), "failed 12 exit 1 \"x\" %20\n").unwrap();
    std::fs::write(tmp.join(unit).join("chain"), "12 start 1700000000 \n12 end 1700000001 1\n").unwrap();
    let samples = tmp.join(unit).join("artifacts").join(refresh::SAMPLES_DIR);
    std::fs::create_dir_all(&samples).unwrap();
    std::fs::write(tmp.join(unit).join("artifacts/results.yml"), "results: {}\n").unwrap();
    let records = "{\"id\": \"0\", \"score\": 1}\n{\"id\": \"1\", \"score\": 0}\n";
    std::fs::write(samples.join("a $(b)\nEVALCTL end.jsonl"), records).unwrap();
    std::fs::write(samples.join("notes.txt"), "not a record").unwrap();
    let prog = refresh::detail_program(tmp.to_str().unwrap(), refresh::Detail::Samples).then(refresh::program(
        tmp.to_str().unwrap(),
        "st",
        0,
    ));
    let fake = "squeue() { echo '5|RUNNING|None|evalctl:st/u/first@00000000000000aa:00000000000000bb'; echo '6|RUNNING|None|other'; }\nsacct() { return 1; }\n";
    let text = prog.full_text().replacen("set -u\n", &format!("set -u\n{fake}"), 1);
    let out = Command::new("bash").arg("-c").arg(&text).output().unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    let r = refresh::read(&Replies::from_stdout(String::from_utf8(out.stdout).unwrap()), "st").unwrap();
    assert_eq!(r.statuses.get(unit).map(String::as_str), Some("failed 12 exit 1 \"x\" %20"));
    assert_eq!(r.chains[unit], ["12 start 1700000000 ", "12 end 1700000001 1"]);
    assert_eq!(r.jobs.len(), 1);
    assert_eq!((r.jobs[0].unit.as_str(), r.jobs[0].script_hash.as_deref()), ("u", Some("00000000000000aa")));
    assert!(!r.sacct_available);
    assert_eq!(r.results_files[unit], "results: {}\n");
    let files: Vec<(&str, &str)> = r.samples_files[unit].iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(files, [("a $(b)\nEVALCTL end.jsonl", records)]);
}

/// Apply gives every job it submits its ownership tag in the name (with
/// the unit's hashes) and the user's comment verbatim, as sbatch arguments.
#[test]
fn apply_names_jobs_and_passes_the_comment_verbatim() {
    let (tmp, fake, mut r, _lock) = locked_stack("comment");
    let json =
        r#"{"OccupiedIdleGPUsJobReaper":{"exemptIdleTimeMins":"600","reason":"data loading"}} it's $(x) `y` \ #z"#;
    for j in &mut r.jobs {
        j.comment = Some(json.to_owned());
    }
    // Each call's arguments, one per line (none holds a newline).
    let record = r#"exec 9>>"$EVALCTL_FAKE/lock"; flock 9; printf '%s\n' "$@" >>"$EVALCTL_FAKE/args"; printf -- '--\n' >>"$EVALCTL_FAKE/args"; n=$(( $(cat "$EVALCTL_FAKE/next" 2>/dev/null || echo 100) + 1 )); echo "$n" >"$EVALCTL_FAKE/next"; echo "$n""#;
    let fakes: Vec<(&str, &str)> =
        FAKE_SLURM.iter().copied().filter(|(n, _)| *n != "sbatch").chain([("sbatch", record)]).collect();
    with_inputs(&r, |inp| {
        let prog = submit::program(inp);
        let out = run_with_fakes(&prog.program.full_text(), &fake, &fakes);
        let outcome = submit::outcome(&Replies::from_stdout(String::from_utf8(out.stdout).unwrap()));
        assert_eq!(outcome.error, None, "{}", String::from_utf8_lossy(&out.stderr));
        let args = std::fs::read_to_string(fake.join("args")).unwrap();
        let calls: Vec<Vec<&str>> = args.split_terminator("--\n").map(|c| c.lines().collect()).collect();
        assert_eq!(calls.len(), outcome.submitted.len());
        // Calls run in parallel: the i-th call recorded got id 101 + i.
        for (i, call) in calls.iter().enumerate() {
            let (unit, role, _) = outcome.submitted.iter().find(|(_, _, id)| *id == 101 + i as u64).expect("an id");
            let u = inp.units.iter().find(|u| &u.id == unit).unwrap();
            let name = call.iter().find_map(|a| a.strip_prefix("--job-name=")).expect("a name");
            let tag = evalctl::remote::layout::parse_name(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(
                (tag.stack.as_str(), tag.unit.as_str(), tag.role.as_str()),
                (r.stack.as_str(), unit.as_str(), role.as_str())
            );
            assert_eq!(tag.script_hash.as_deref(), Some(&u.script_hash[..16]));
            assert_eq!(tag.result_hash.as_deref(), Some(&u.result_hash[..16]));
            let comments: Vec<&str> = call.iter().filter_map(|a| a.strip_prefix("--comment=")).collect();
            assert_eq!(comments, [json], "{call:?}");
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
}
