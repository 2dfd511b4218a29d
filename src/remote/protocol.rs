//! The reply protocol: what a program run on the login node prints back,
//! every kind of line in one enum ([`Reply`]), the one parser ([`parse`]),
//! and the shell that emits each kind, side by side.
//!
//! A reply is one line `EVALCTL <kind>[ <field>...]`. Fields are separated
//! by single spaces and written by the shell function `evalctl_reply`
//! ([`PRELUDE`], sent ahead of every program), which percent-encodes `%`,
//! space, tab, newline and carriage return in each field. So a unit name, a
//! status line or an error message can hold any text and still cannot split
//! a field or start a line of its own. Two kinds carry a line of Slurm output
//! verbatim instead (`job`: squeue, `acct`: sacct), prefixed by `sed` for
//! speed; Slurm prints one line per job there and the data is read as the
//! rest of the line. Lines that do not start with `EVALCTL ` (output of the
//! commands a program runs) are ignored.

use crate::jobid::JobId;
use crate::shell::{Code, Shell};

use super::encoding::{Snippet, snippet};

/// One reply line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The login user (refresh).
    User(String),
    /// The stack's state file, base64 (refresh).
    State(String),
    /// The stack's state file, gzip then base64 (refresh, where the login
    /// node has gzip).
    StateGz(String),
    /// First line of a unit's status file (refresh).
    Status { unit: String, line: String },
    /// A squeue line `ID|STATE|REASON|COMMENT` of the stack (refresh).
    Job(String),
    /// A sacct line `JOBID|NAME|STATE` of the stack (refresh).
    Acct(String),
    /// sacct answered: accounting is available (refresh).
    SacctOk,
    /// squeue failed; its first line of output (refresh).
    SqueueError(String),
    /// Seconds of run time a unit's chain file records (refresh).
    Elapsed { unit: String, seconds: u64 },
    /// `sbatch --test-only` of the `index`-th job shape: its exit code and
    /// output (refresh, see `crate::remote::probe`).
    Probe { index: usize, code: i32, output: String },
    /// No shape could be probed; why (refresh).
    ProbeUnavailable(String),
    /// The controller's association records and QOS usage for the user
    /// (`scontrol show assoc_mgr flags=assoc,qos`), read by
    /// `crate::cluster::limits`.
    Limits(String),
    /// The limits of the QOS the stack's jobs name (`sacctmgr show qos`).
    QosTable(String),
    /// The cluster's `MaxArraySize` (`scontrol show config`).
    MaxArraySize(u64),
    /// One line of a unit's chain file (status detail).
    Chain { unit: String, line: String },
    /// A unit's harness progress, JSON on one line (status detail).
    Progress { unit: String, json: String },
    /// A unit has a results file (status detail).
    Results { unit: String },
    /// A unit's results file (`results.yml`), base64; empty when it is too
    /// large to send (results).
    ResultsFile { unit: String, b64: String },
    /// One per-sample file of a unit, by file name: gzip, then base64;
    /// empty when it is too large to send (compare).
    SamplesFile { unit: String, name: String, b64: String },
    /// The stack lock was taken.
    Locked,
    /// The stack lock is held by someone else: the lock file, base64.
    LockHeld(String),
    /// The lock was dropped.
    Unlocked,
    /// The lock was not held by the given id; nothing was done.
    NotHeld,
    /// The lock is no longer this process's: nothing was done.
    LockLost,
    /// Apply submitted a job (held until `Released`).
    Submitted { unit: String, role: String, id: JobId },
    /// Apply cancelled these jobs (replaced or removed units).
    Cancelled(Vec<JobId>),
    /// Apply failed and cancelled the jobs it had submitted.
    CancelledOwn(Vec<JobId>),
    /// `cancel` stopped a unit.
    CancelledUnit(String),
    /// Apply replaced a running unit's scripts.
    Updated(String),
    /// Apply released its held jobs.
    Released,
    /// Apply wrote the state file.
    StateWritten,
    /// A program failed; the message.
    Error(String),
    /// A log file and its size in bytes.
    File { name: String, size: u64 },
    /// The program ran to its end. Every program prints it last.
    End,
}

/// Shell functions every program may use (sent ahead of it):
/// `evalctl_reply KIND [FIELD...]` prints one reply line, each field
/// percent-encoded.
pub const PRELUDE: Code = Code(
    r#"evalctl_reply() {
  local line="EVALCTL $1" f
  shift
  for f in "$@"; do
    f=${f//%/%25}
    f=${f// /%20}
    f=${f//$'\t'/%09}
    f=${f//$'\n'/%0A}
    f=${f//$'\r'/%0D}
    line+=" $f"
  done
  printf '%s\n' "$line"
}
"#,
);

/// `evalctl_reply KIND FIELD...`: one reply line whose fields are shell
/// expressions (`"$u"`, `"$(head -n 1 "$f")"`) or quoted values.
pub fn emit(kind: Code, fields: &[&dyn Shell]) -> Snippet {
    let mut s = snippet!("evalctl_reply {}", kind);
    for f in fields {
        s.push(snippet!(" {}", f));
    }
    s.code(Code("\n"));
    s
}

/// A filter that turns each input line into a reply of a verbatim kind
/// (`job`, `acct`).
pub fn emit_verbatim(kind: Verbatim) -> Snippet {
    match kind {
        Verbatim::Job => snippet!("sed 's/^/EVALCTL job /'"),
        Verbatim::Acct => snippet!("sed 's/^/EVALCTL acct /'"),
    }
}

/// Kinds whose data is a line of Slurm output, unencoded.
#[derive(Clone, Copy, Debug)]
pub enum Verbatim {
    Job,
    Acct,
}

// The emitters of each kind, for the programs.

pub fn user(name: &dyn Shell) -> Snippet {
    emit(Code("user"), &[name])
}
/// The file at `path` as a `state-gz` reply (gzip, then base64), or a
/// `state` reply (base64) without gzip: streamed straight to the output,
/// since a state of thousands of units is megabytes that bash would be
/// slow to hold and encode (base64 needs no encoding).
pub fn state_file(path: &dyn Shell) -> Snippet {
    snippet!(
        "if command -v gzip >/dev/null 2>&1; then\n  printf 'EVALCTL state-gz '\n  gzip -1 -c <{} | base64 -w0\nelse\n  printf 'EVALCTL state '\n  base64 -w0 <{}\nfi\necho\n",
        path,
        path
    )
}
pub fn status(unit: &dyn Shell, line: &dyn Shell) -> Snippet {
    emit(Code("status"), &[unit, line])
}
pub fn sacct_ok() -> Snippet {
    emit(Code("sacct"), &[&Code("ok")])
}
pub fn squeue_error(message: &dyn Shell) -> Snippet {
    emit(Code("squeue-error"), &[message])
}
pub fn elapsed(unit: &dyn Shell, seconds: &dyn Shell) -> Snippet {
    emit(Code("elapsed"), &[unit, seconds])
}
pub fn probe(index: &dyn Shell, code: &dyn Shell, output: &dyn Shell) -> Snippet {
    emit(Code("probe"), &[index, code, output])
}
pub fn probe_unavailable(why: &dyn Shell) -> Snippet {
    emit(Code("probe-unavailable"), &[why])
}
pub fn limits(text: &dyn Shell) -> Snippet {
    emit(Code("limits"), &[text])
}
pub fn qos_table(text: &dyn Shell) -> Snippet {
    emit(Code("qos-table"), &[text])
}
pub fn max_array_size(n: &dyn Shell) -> Snippet {
    emit(Code("max-array-size"), &[n])
}
pub fn chain(unit: &dyn Shell, line: &dyn Shell) -> Snippet {
    emit(Code("chain"), &[unit, line])
}
pub fn progress(unit: &dyn Shell, json: &dyn Shell) -> Snippet {
    emit(Code("progress"), &[unit, json])
}
pub fn results(unit: &dyn Shell) -> Snippet {
    emit(Code("results"), &[unit])
}
pub fn results_file(unit: &dyn Shell, b64: &dyn Shell) -> Snippet {
    emit(Code("results-file"), &[unit, b64])
}
pub fn samples_file(unit: &dyn Shell, name: &dyn Shell, b64: &dyn Shell) -> Snippet {
    emit(Code("samples-file"), &[unit, name, b64])
}
pub fn locked() -> Snippet {
    emit(Code("locked"), &[])
}
pub fn lock_held(b64: &dyn Shell) -> Snippet {
    emit(Code("lock-held"), &[b64])
}
pub fn unlocked() -> Snippet {
    emit(Code("unlocked"), &[])
}
pub fn not_held() -> Snippet {
    emit(Code("not-held"), &[])
}
pub fn lock_lost() -> Snippet {
    emit(Code("lock-lost"), &[])
}
pub fn submitted(unit: &dyn Shell, role: &dyn Shell, id: &dyn Shell) -> Snippet {
    emit(Code("submitted"), &[unit, role, id])
}
/// `ids`: words that expand to job ids (`12 13`, `"${SUBMITTED[@]}"`).
pub fn cancelled(ids: &dyn Shell) -> Snippet {
    emit(Code("cancelled"), &[ids])
}
pub fn cancelled_own(ids: &dyn Shell) -> Snippet {
    emit(Code("cancelled-own"), &[ids])
}
pub fn cancelled_unit(unit: &dyn Shell) -> Snippet {
    emit(Code("cancelled-unit"), &[unit])
}
pub fn updated(unit: &dyn Shell) -> Snippet {
    emit(Code("updated"), &[unit])
}
pub fn released() -> Snippet {
    emit(Code("released"), &[])
}
pub fn state_written() -> Snippet {
    emit(Code("state-written"), &[])
}
pub fn error(message: &dyn Shell) -> Snippet {
    emit(Code("error"), &[message])
}
pub fn file(name: &dyn Shell, size: &dyn Shell) -> Snippet {
    emit(Code("file"), &[name, size])
}
pub fn end() -> Snippet {
    emit(Code("end"), &[])
}

/// Every reply of a program's output, in order.
pub fn parse(stdout: &str) -> Vec<Reply> {
    stdout.lines().filter_map(parse_line).collect()
}

/// One line: `None` for output that is not a reply, or a malformed one.
pub fn parse_line(line: &str) -> Option<Reply> {
    let rest = line.strip_prefix("EVALCTL ")?;
    let (kind, data) = rest.split_once(' ').unwrap_or((rest, ""));
    match kind {
        "job" => return Some(Reply::Job(data.to_owned())),
        "acct" => return Some(Reply::Acct(data.to_owned())),
        _ => {}
    }
    let fields: Vec<String> = if data.is_empty() { vec![] } else { data.split(' ').map(decode).collect() };
    let one = || fields.first().cloned().unwrap_or_default();
    let ids = || fields.iter().filter_map(|x| x.parse::<JobId>().ok()).collect::<Vec<JobId>>();
    Some(match (kind, fields.as_slice()) {
        ("user", _) => Reply::User(one()),
        ("state", _) => Reply::State(one()),
        ("state-gz", _) => Reply::StateGz(one()),
        ("status", [unit, line]) => Reply::Status { unit: unit.clone(), line: line.clone() },
        ("sacct", _) => Reply::SacctOk,
        ("squeue-error", _) => Reply::SqueueError(one()),
        ("elapsed", [unit, seconds]) => Reply::Elapsed { unit: unit.clone(), seconds: seconds.trim().parse().ok()? },
        ("probe", [index, code, output]) => {
            Reply::Probe { index: index.parse().ok()?, code: code.trim().parse().ok()?, output: output.clone() }
        }
        ("probe-unavailable", _) => Reply::ProbeUnavailable(one()),
        ("limits", _) => Reply::Limits(one()),
        ("qos-table", _) => Reply::QosTable(one()),
        ("max-array-size", [n]) => Reply::MaxArraySize(n.trim().parse().ok()?),
        ("chain", [unit, line]) => Reply::Chain { unit: unit.clone(), line: line.clone() },
        ("progress", [unit, json]) => Reply::Progress { unit: unit.clone(), json: json.clone() },
        ("results", [unit]) => Reply::Results { unit: unit.clone() },
        ("results-file", [unit, b64]) => Reply::ResultsFile { unit: unit.clone(), b64: b64.clone() },
        ("samples-file", [unit, name, b64]) => {
            Reply::SamplesFile { unit: unit.clone(), name: name.clone(), b64: b64.clone() }
        }
        ("locked", _) => Reply::Locked,
        ("lock-held", _) => Reply::LockHeld(one()),
        ("unlocked", _) => Reply::Unlocked,
        ("not-held", _) => Reply::NotHeld,
        ("lock-lost", _) => Reply::LockLost,
        ("submitted", [unit, role, id]) => {
            Reply::Submitted { unit: unit.clone(), role: role.clone(), id: id.parse().ok()? }
        }
        ("cancelled", _) => Reply::Cancelled(ids()),
        ("cancelled-own", _) => Reply::CancelledOwn(ids()),
        ("cancelled-unit", [unit]) => Reply::CancelledUnit(unit.clone()),
        ("updated", [unit]) => Reply::Updated(unit.clone()),
        ("released", _) => Reply::Released,
        ("state-written", _) => Reply::StateWritten,
        ("error", _) => Reply::Error(one()),
        ("file", [name, size]) => Reply::File { name: name.clone(), size: size.trim().parse().unwrap_or(0) },
        ("end", _) => Reply::End,
        _ => return None,
    })
}

/// Undoes `evalctl_reply`'s percent-encoding (any `%XX`; a `%` without
/// two hex digits stays as it is).
fn decode(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::ShellWord;

    fn w(s: &str) -> ShellWord {
        ShellWord::from(s)
    }

    /// Runs the snippets in bash after the prelude; returns the replies.
    fn round_trip(program: &Snippet) -> Vec<Reply> {
        let text = format!("set -u\n{}{}", PRELUDE.0, program.as_str());
        let out = std::process::Command::new("bash").arg("-c").arg(&text).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        parse(&String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn every_kind_round_trips() {
        let hostile = "a b\t\"c\" 'd' %41 $(x) `y`\nEVALCTL end\r\nEVALCTL submitted x y 1";
        let unit = "unit name\nEVALCTL locked";
        let cases: Vec<(Snippet, Reply)> = vec![
            (user(&w("alice")), Reply::User("alice".into())),
            (
                status(&w(unit), &w("failed 12 exit 1")),
                Reply::Status { unit: unit.into(), line: "failed 12 exit 1".into() },
            ),
            (sacct_ok(), Reply::SacctOk),
            (squeue_error(&w(hostile)), Reply::SqueueError(hostile.into())),
            (elapsed(&w(unit), &w("3600")), Reply::Elapsed { unit: unit.into(), seconds: 3600 }),
            (probe(&3u64, &Code("1"), &w(hostile)), Reply::Probe { index: 3, code: 1, output: hostile.into() }),
            (probe_unavailable(&w("no sbatch")), Reply::ProbeUnavailable("no sbatch".into())),
            (limits(&w(hostile)), Reply::Limits(hostile.into())),
            (qos_table(&w(hostile)), Reply::QosTable(hostile.into())),
            (max_array_size(&w("1001")), Reply::MaxArraySize(1001)),
            (
                chain(&w(unit), &w("12 submit 1700000000 13")),
                Reply::Chain { unit: unit.into(), line: "12 submit 1700000000 13".into() },
            ),
            (
                progress(&w(unit), &w("{\"done\": 3}")),
                Reply::Progress { unit: unit.into(), json: "{\"done\": 3}".into() },
            ),
            (results(&w(unit)), Reply::Results { unit: unit.into() }),
            (results_file(&w(unit), &w("YQ==")), Reply::ResultsFile { unit: unit.into(), b64: "YQ==".into() }),
            (
                samples_file(&w(unit), &w("a b.jsonl"), &w("H4sI")),
                Reply::SamplesFile { unit: unit.into(), name: "a b.jsonl".into(), b64: "H4sI".into() },
            ),
            (locked(), Reply::Locked),
            (lock_held(&w("")), Reply::LockHeld(String::new())),
            (unlocked(), Reply::Unlocked),
            (not_held(), Reply::NotHeld),
            (lock_lost(), Reply::LockLost),
            (
                submitted(&w(unit), &w("first"), &12u64),
                Reply::Submitted { unit: unit.into(), role: "first".into(), id: 12.into() },
            ),
            (cancelled(&Code("12 13")), Reply::Cancelled(crate::jobid::jobs([12, 13]))),
            (cancelled_own(&Code("")), Reply::CancelledOwn(vec![])),
            (cancelled_unit(&w(unit)), Reply::CancelledUnit(unit.into())),
            (updated(&w(unit)), Reply::Updated(unit.into())),
            (released(), Reply::Released),
            (state_written(), Reply::StateWritten),
            (error(&w(hostile)), Reply::Error(hostile.into())),
            (error(&w("")), Reply::Error(String::new())),
            (file(&w("server-12-a b.log"), &Code("42")), Reply::File { name: "server-12-a b.log".into(), size: 42 }),
            (end(), Reply::End),
        ];
        let mut all = Snippet::default();
        for (s, _) in &cases {
            all.push(s.clone());
        }
        let want: Vec<Reply> = cases.into_iter().map(|(_, r)| r).collect();
        assert_eq!(round_trip(&all), want);
    }

    #[test]
    fn verbatim_kinds_keep_the_line() {
        let mut p = snippet!("printf '%s\\n' {} | ", w("12|PENDING|Dependency|note evalctl:st/a/resume"));
        p.push(emit_verbatim(Verbatim::Job));
        p.push(snippet!("\nprintf '%s\\n' {} | ", w("9|st.e|CANCELLED by 0")));
        p.push(emit_verbatim(Verbatim::Acct));
        p.code(Code("\n"));
        assert_eq!(
            round_trip(&p),
            [
                Reply::Job("12|PENDING|Dependency|note evalctl:st/a/resume".into()),
                Reply::Acct("9|st.e|CANCELLED by 0".into())
            ]
        );
    }

    #[test]
    fn a_state_file_comes_back_whole_with_gzip_or_without() {
        use base64::Engine;
        let dir = std::env::temp_dir().join(format!("evalctl-state-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let text: String = (0..5000).map(|i| format!("{{\"unit\": \"t{i}\", \"x\": \"% \\t\"}}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let snippet = state_file(&w(path.to_str().unwrap()));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        match round_trip(&snippet).as_slice() {
            [Reply::StateGz(data)] => {
                let mut back = String::new();
                std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&b64(data)[..]), &mut back).unwrap();
                assert_eq!(back, text);
                assert!(data.len() < text.len() / 4, "compressed: {} of {}", data.len(), text.len());
            }
            other => panic!("expected one state-gz reply: {other:?}"),
        }
        // Without gzip on the PATH: plain base64.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(which("base64"), bin.join("base64")).unwrap();
        let program = format!("set -u\n{}{}", PRELUDE.0, snippet.as_str());
        let out = std::process::Command::new(which("bash")).arg("-c").arg(&program).env("PATH", &bin).output().unwrap();
        match parse(&String::from_utf8(out.stdout).unwrap()).as_slice() {
            [Reply::State(data)] => assert_eq!(String::from_utf8(b64(data)).unwrap(), text),
            other => panic!("expected one state reply: {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The absolute path of a program on the PATH.
    fn which(name: &str) -> std::path::PathBuf {
        std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no {name} on the PATH"))
    }

    #[test]
    fn other_lines_are_not_replies() {
        assert_eq!(parse("hello\nEVALCTLend\nEVALCTL nonsense 1\nEVALCTL submitted a b x\n EVALCTL end\n"), []);
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%2"), "%zz%2");
    }
}
