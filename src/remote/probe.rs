//! The feasibility probe: `sbatch --test-only` once per distinct job shape,
//! run in the same round trip as the refresh that `plan` and `apply` make.
//!
//! Exists so that the scheduler itself, not a copy of its rules, says
//! whether the jobs of a plan could run, before anything is submitted.
//! `--test-only` validates the request and estimates a start time without
//! creating a job. Each shape's `#SBATCH` lines reach sbatch as a tiny
//! script on its standard input (`#!/bin/sh`, the lines, `true`), exactly as
//! rendered, so sbatch reads the values with the rules it reads the real
//! scripts with. Reading the answers is `crate::plan::feasibility`.

use crate::plan::feasibility::Shape;
use crate::shell::{Code, ShellWord};

use super::Program;
use super::encoding::snippet;
use super::protocol;

/// Seconds one `sbatch --test-only` may take before it is given up (with
/// `timeout`, when the login node has it).
pub const TIMEOUT_S: u32 = 20;

/// The program that probes `shapes`: a `probe` reply per shape (its index,
/// sbatch's exit code and output), or one `probe-unavailable` reply when
/// there is no `sbatch`. Empty for no shapes. Runs before the refresh
/// program, which ends the round trip.
pub fn program(shapes: &[Shape]) -> Program {
    let mut p = Program::new();
    if shapes.is_empty() {
        return p;
    }
    p.code(Code(
        "if command -v sbatch >/dev/null 2>&1; then\n  \
         if command -v timeout >/dev/null 2>&1; then evalctl_t=1; else evalctl_t=; fi\n",
    ));
    for (i, shape) in shapes.iter().enumerate() {
        p.push(snippet!(
            "  out=$(printf '%s' {} | ${{evalctl_t:+timeout {}}} sbatch --test-only 2>&1); rc=$?\n  ",
            ShellWord::from(shape.probe_script().as_str()),
            TIMEOUT_S
        ));
        p.push(protocol::probe(&i, &Code("\"$rc\""), &Code("\"${out:0:4000}\"")));
    }
    p.code(Code("else\n  "));
    p.push(protocol::probe_unavailable(&ShellWord::from("there is no sbatch on the login node")));
    p.code(Code("fi\n"));
    // The limits the jobs will be charged against, with what is in use
    // (only where the controller keeps associations: accounting).
    p.code(Code(
        "if command -v scontrol >/dev/null 2>&1 && out=$(scontrol show assoc_mgr users=\"$(id -un)\" flags=assoc,qos 2>/dev/null) && [ -n \"$out\" ]; then\n  ",
    ));
    p.push(protocol::limits(&Code("\"$out\"")));
    p.code(Code("fi\n"));
    // How many elements a job array may have (`execution.job_arrays`).
    p.code(Code(
        "if command -v scontrol >/dev/null 2>&1 && out=$(scontrol show config 2>/dev/null); then\n  while IFS='= ' read -r k v _; do\n    if [ \"$k\" = MaxArraySize ]; then\n      ",
    ));
    p.push(protocol::max_array_size(&Code("\"$v\"")));
    p.code(Code("      break\n    fi\n  done <<<\"$out\"\nfi\n"));
    // The QOS the jobs name: their limits (the controller shows a user's
    // limits in a QOS only once the user has jobs in it).
    let mut qos: Vec<String> = shapes.iter().filter_map(|s| s.get("qos")).filter(|q| !q.is_empty()).collect();
    qos.sort();
    qos.dedup();
    if !qos.is_empty() {
        p.push(snippet!(
            "if command -v sacctmgr >/dev/null 2>&1 && out=$(${{evalctl_t:+timeout {}}} sacctmgr -n -P show qos where name={} format={} 2>/dev/null) && [ -n \"$out\" ]; then\n  ",
            TIMEOUT_S,
            ShellWord::from(qos.join(",").as_str()),
            Code(QOS_FORMAT)
        ));
        p.push(protocol::qos_table(&Code("\"$out\"")));
        p.code(Code("fi\n"));
    }
    p
}

/// The columns `crate::cluster::limits::parse_qos_table` reads.
const QOS_FORMAT: &str = "name,maxsubmitjobsperuser,maxjobsperuser,maxwall,grpsubmitjobs,grpjobs";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{Replies, protocol::Reply};

    /// Runs the program under bash with `bin` as the whole PATH.
    fn run(p: &Program, bin: &std::path::Path) -> Vec<Reply> {
        let out =
            std::process::Command::new("/bin/bash").arg("-c").arg(p.full_text()).env("PATH", bin).output().unwrap();
        Replies::from_stdout(String::from_utf8(out.stdout).unwrap()).replies
    }

    #[test]
    fn each_shape_reaches_sbatch_on_stdin_and_its_answer_comes_back() {
        let dir = std::env::temp_dir().join(format!("evalctl-probe-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = bin.join("sbatch");
        // Echoes its arguments and the script it read (builtins only).
        let script = "#!/bin/bash\necho \"args: $*\" >&2\nwhile IFS= read -r l; do echo \"$l\" >&2; done\n";
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let a =
            Shape::of_script("#SBATCH --partition=cpu\n#SBATCH --comment=\"a b\"\n#SBATCH --constraint=\"x|y $(z)\"\n");
        let replies = run(&program(&[a.clone(), a]), &bin);
        assert_eq!(replies.len(), 2, "{replies:?}");
        match &replies[0] {
            Reply::Probe { index: 0, code: 0, output } => {
                assert!(output.starts_with("args: --test-only\n#!/bin/sh\n#SBATCH --partition=cpu\n"), "{output}");
                assert!(output.contains("#SBATCH --constraint=\"x|y $(z)\"\ntrue"), "{output}");
                assert!(!output.contains("comment"), "{output}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&replies[1], Reply::Probe { index: 1, code: 0, .. }));
        std::fs::remove_file(&fake).unwrap();
        let none = run(&program(&[Shape::of_script("#SBATCH --nodes=1\n")]), &bin);
        assert!(matches!(none.as_slice(), [Reply::ProbeUnavailable(_)]), "{none:?}");
        assert!(program(&[]).text().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_association_limits_come_back_with_the_probes() {
        let dir = std::env::temp_dir().join(format!("evalctl-probe-limits-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fixture = dir.join("assoc.txt");
        std::fs::write(&fixture, include_str!("../../tests/fixtures/slurm/assoc_mgr.txt")).unwrap();
        let fakes = [
            ("sbatch", "#!/bin/bash\necho 'sbatch: Job 1 to start at 2030-01-01T00:00:00' >&2\n".to_owned()),
            ("id", "#!/bin/bash\necho slurmuser\n".to_owned()),
            // Answers only the question the program asks.
            (
                "scontrol",
                format!(
                    "#!/bin/bash\nif [ \"$*\" = 'show config' ]; then printf 'MaxArraySize            = 4001\\nMaxJobCount             = 10000\\n'; exit 0; fi\n[ \"$*\" = 'show assoc_mgr users=slurmuser flags=assoc,qos' ] || exit 1\nwhile IFS= read -r l; do echo \"$l\"; done <{}\n",
                    fixture.display()
                ),
            ),
            (
                "sacctmgr",
                format!(
                    "#!/bin/bash\n[ \"$*\" = '-n -P show qos where name=normal,small format={QOS_FORMAT}' ] || exit 1\necho 'small|30|10|01:00:00||'\n"
                ),
            ),
        ];
        for (name, body) in fakes {
            std::fs::write(bin.join(name), body).unwrap();
            std::fs::set_permissions(bin.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let shapes = [
            Shape::of_script("#SBATCH --account=limited\n#SBATCH --qos=small\n"),
            Shape::of_script("#SBATCH --account=limited\n#SBATCH --qos=normal\n"),
            Shape::of_script("#SBATCH --account=limited\n#SBATCH --qos=small\n#SBATCH --time=5\n"),
        ];
        let replies = run(&program(&shapes), &bin);
        let text = replies.iter().find_map(|r| if let Reply::Limits(t) = r { Some(t.clone()) } else { None });
        let chain_len = text.map(|t| crate::cluster::limits::parse(&t).chain("slurmuser", "limited", "").len());
        assert_eq!(chain_len, Some(3), "{replies:?}");
        let table = replies.iter().find_map(|r| if let Reply::QosTable(t) = r { Some(t.clone()) } else { None });
        assert_eq!(table.as_deref(), Some("small|30|10|01:00:00||"), "each QOS asked about once: {replies:?}");
        assert!(replies.contains(&Reply::MaxArraySize(4001)), "{replies:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
