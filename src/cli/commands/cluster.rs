//! Lifecycle commands on a stack's cluster: status, logs, cancel, state.

use std::time::Duration;

use super::super::args::{ClusterArgs, ConfigArgs, OverrideArgs, config_and_names};
use super::super::printer::Printer;
use crate::diag::Diagnostic;
use crate::error::{Error, ExitStatus, Result};
use crate::ops::{self, LogFollower, Stack};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub args: ConfigArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::Args, Debug)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub args: ConfigArgs,
    /// Output: a table, a versioned JSON document, CSV, or Markdown (a PR comment).
    #[arg(long, value_enum, default_value = "table")]
    pub format: ops::results::Format,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The base: a config, or `REF:PATH` for a config as it is at a git ref (e.g. `main:evals/llama.yaml`).
    pub base: String,
    /// The candidate: a config, or `REF:PATH`.
    pub candidate: String,
    /// Output: a table, a versioned JSON document, or Markdown (a PR comment, details folded).
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::compare::Format,
    /// A gate policy (YAML): exit 5 when it fails, 6 when it cannot decide, 0 when it passes.
    #[arg(long, value_name = "POLICY")]
    pub gate: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// `[CONFIG] NODE`: the config (default evalctl.yaml) and the unit.
    #[arg(num_args = 1..=2, value_name = "[CONFIG] NODE", required = true)]
    pub args: Vec<String>,
    #[command(flatten)]
    pub o: OverrideArgs,
    /// Keep printing new output until the job ends.
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    /// `[CONFIG] [NODE...]`: the config (default evalctl.yaml) and units (default: all).
    #[arg(value_name = "[CONFIG] [NODE]")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub o: OverrideArgs,
    /// Wait up to this many seconds for another apply's lock.
    #[arg(long, value_name = "SECS")]
    pub lock_timeout: Option<u64>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum StateCommand {
    /// Remove a stack's lock, by the id its holder printed.
    ///
    /// Example: evalctl state unlock 0001a2b3c4d5e6f7 evals/llama.yaml
    Unlock {
        /// Lock id (from the "locked by" message).
        id: String,
        #[command(flatten)]
        args: ConfigArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Print the recorded state of a stack (from the cluster, or the local copy with --offline).
    ///
    /// Example: evalctl state show evals/llama.yaml --offline
    Show {
        #[command(flatten)]
        args: ConfigArgs,
        /// Read the local copy instead of the cluster's.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

fn open(a: &ConfigArgs, p: &Printer) -> Result<Stack> {
    Stack::open(&a.config, &a.o.overrides, &p.sources, p)
}

pub fn status(a: &StatusArgs, p: &Printer) -> Result<ExitStatus> {
    let stack = open(&a.args, p)?;
    let cluster = p.connect(&stack, &a.cluster)?;
    let rows = ops::status(&stack, cluster.as_ref(), stack.since())?;
    p.out(&if a.json {
        serde_json::to_string_pretty(&rows).expect("plain data serializes") + "\n"
    } else {
        crate::status::table(&rows)
    })?;
    Ok(ExitStatus::Success)
}

pub fn results(a: &ResultsArgs, p: &Printer) -> Result<ExitStatus> {
    let stack = open(&a.args, p)?;
    let cluster = p.connect(&stack, &a.cluster)?;
    let report = ops::results::results(&stack, cluster.as_ref(), stack.since())?;
    p.out(&ops::results::render(&report, a.format))?;
    Ok(ExitStatus::Success)
}

pub fn compare(a: &CompareArgs, p: &Printer) -> Result<ExitStatus> {
    // The policy first: a bad one is an error before any round trip.
    let policy = match &a.gate {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::msg(format!("cannot read the gate policy {}: {e}", path.display())))?;
            Some(crate::gate::parse(&p.sources, &path.display().to_string(), &text).map_err(Error::Diagnostics)?)
        }
    };
    let sources = [&a.base, &a.candidate].map(|s| ops::compare::ConfigSource::resolve(s));
    let [base, candidate] = sources;
    let (base, candidate) = (base?, candidate?);
    let stacks = [base.path(), candidate.path()].map(|path| Stack::open(path, &[], &p.sources, p));
    let [bs, cs] = stacks;
    let (bs, cs) = (bs?, cs?);
    let bc = p.connect(&bs, &a.cluster)?;
    let cc = p.connect(&cs, &a.cluster)?;
    let mut cmp = ops::compare::compare((&a.base, &bs, bc.as_ref()), (&a.candidate, &cs, cc.as_ref()))?;
    let status = match &policy {
        None => ExitStatus::Success,
        Some(policy) => {
            let verdict = crate::gate::evaluate(policy, &cmp);
            let status = match verdict.outcome {
                crate::gate::Outcome::Pass => ExitStatus::Success,
                crate::gate::Outcome::Fail => ExitStatus::GateFailed,
                crate::gate::Outcome::Inconclusive => ExitStatus::GateInconclusive,
            };
            cmp.gate = Some(verdict);
            status
        }
    };
    p.out(&crate::compare::render(&cmp, a.format))?;
    Ok(status)
}

pub fn logs(a: &LogsArgs, p: &Printer) -> Result<ExitStatus> {
    let (config, names) = config_and_names(&a.args);
    let Some(unit) = names.first() else {
        return Err(Error::msg("name the unit whose logs to show: evalctl logs [CONFIG] NODE"));
    };
    let stack = Stack::open(&config, &a.o.overrides, &p.sources, p)?;
    let cluster = p.connect(&stack, &a.cluster)?;
    let since = stack.since();
    let mut follower = LogFollower::new();
    loop {
        let chunk = follower.poll(&stack, cluster.as_ref(), unit, since)?;
        p.out(&chunk.text)?;
        if !a.follow || chunk.finished {
            return Ok(ExitStatus::Success);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

pub fn cancel(a: &CancelArgs, p: &Printer) -> Result<ExitStatus> {
    let (config, names) = config_and_names(&a.args);
    let stack = Stack::open(&config, &a.o.overrides, &p.sources, p)?;
    let cluster = p.connect(&stack, &a.cluster)?;
    let command = super::super::args::command_line();
    let timeout = a.lock_timeout.map(Duration::from_secs);
    let cancelled = ops::cancel(&stack, cluster.as_ref(), &names, timeout, &command, p)?;
    p.out(&if cancelled.is_empty() {
        "Nothing to cancel: no live job.\n".to_owned()
    } else {
        format!("Cancelled: {}\n", cancelled.join(", "))
    })?;
    Ok(ExitStatus::Success)
}

pub fn state(cmd: &StateCommand, p: &Printer) -> Result<ExitStatus> {
    match cmd {
        StateCommand::Unlock { id, args, cluster } => {
            let stack = open(args, p)?;
            let c = p.connect(&stack, cluster)?;
            ops::state::unlock(&stack, c.as_ref(), id)?;
            p.err(&format!("Lock {id} of stack `{}` removed.\n", stack.rendered.stack));
            Ok(ExitStatus::Success)
        }
        StateCommand::Show { args, offline, cluster } => {
            let stack = open(args, p)?;
            let st = if *offline {
                ops::state::read(&stack, None)?
            } else {
                let c = p.connect(&stack, cluster)?;
                ops::state::read(&stack, Some(c.as_ref()))?
            };
            let Some(s) = st else {
                let msg = format!("stack `{}` has no recorded state", stack.loaded.stack);
                ops::Reporter::warnings(p, &[Diagnostic::warning(None, msg)]);
                return Ok(ExitStatus::Failure);
            };
            let summary = ops::state::summary(&s);
            p.out(&(serde_json::to_string_pretty(&summary).expect("plain data serializes") + "\n"))?;
            Ok(ExitStatus::Success)
        }
    }
}
