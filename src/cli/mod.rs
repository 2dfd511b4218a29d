//! Command-line interface: argument parsing, one call into `ops` per
//! command, printing. Results go to stdout, messages and diagnostics to
//! stderr (see [`printer`]); the exit status comes from
//! [`crate::error::ExitStatus`].

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::schema::Draft;
use crate::diag::Sources;
use crate::error::{ExitStatus, Result};

mod args;
mod commands;
mod printer;

use args::ConfigArgs;
use printer::Printer;

/// Declarative plan/apply for LLM evaluations on Slurm clusters.
#[derive(Parser, Debug)]
#[command(name = "evalctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Also print each round trip to the cluster (time, bytes sent).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a config: composition, interpolation, schema and semantic checks.
    ///
    /// Reports every problem as FILE:LINE:COL: message and exits 1 if any.
    ///
    /// Example: evalctl validate examples/slurm_llama_3_1_8b_instruct.yaml -o execution.walltime=02:00:00
    Validate {
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Write the sbatch script of every job to a directory.
    ///
    /// One `<node>.sbatch` per job, plus `<node>.<group>.secrets.env` templates
    /// naming where `apply` reads each secret (never the values). Files an
    /// earlier render wrote for jobs that no longer exist are removed from
    /// DIR (a manifest, `.evalctl-render`, says which); nothing else is.
    ///
    /// Example: evalctl render examples/slurm_llama_3_1_8b_instruct.yaml --out /tmp/scripts
    Render {
        #[command(flatten)]
        args: ConfigArgs,
        /// Directory to write the scripts to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the job graph: jobs and their dependencies.
    ///
    /// Example: evalctl graph examples/slurm_llama_3_1_8b_instruct.yaml --format dot | dot -Tsvg > graph.svg
    Graph {
        #[command(flatten)]
        args: ConfigArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: commands::config::GraphFormat,
    },
    /// Show what apply would change: refresh the stack from the cluster
    /// (one round trip) and diff every script that would change.
    ///
    /// Example: evalctl plan evals/llama.yaml --format markdown > plan.md
    Plan(commands::plan::PlanArgs),
    /// Make the cluster match the config (or a plan saved with `plan --out`).
    ///
    /// Asks for confirmation on a terminal unless --auto-approve. Exit statuses:
    /// 0 done, 1 error, 3 stack locked by another apply, 4 saved plan is stale.
    ///
    /// Example: evalctl apply evals/llama.yaml --auto-approve --lock-timeout 600
    Apply(commands::apply::ApplyArgs),
    /// Script diff between two configs, without a cluster.
    ///
    /// Example: evalctl diff main/evals.yaml evals.yaml
    Diff(commands::plan::DiffArgs),
    /// Where every unit of a stack stands: state, resume chain job ids,
    /// elapsed time, attempts, progress, results.
    ///
    /// Example: evalctl status evals/llama.yaml --json
    Status(commands::cluster::StatusArgs),
    /// Every score of the stack's tasks (one row per task, metric and
    /// score: value, stderr, samples, state, job ids, fingerprint), and the
    /// tasks without scores yet.
    ///
    /// Example: evalctl results evals/llama.yaml --format markdown
    Results(commands::cluster::ResultsArgs),
    /// Two stacks' scores side by side: per score the two values, the
    /// difference and its 95% interval, and a test (McNemar or a paired
    /// bootstrap on per-sample records, else a z-test from the standard
    /// errors). Refuses tasks that differ in more than the model, naming the
    /// difference. With --gate, a go/no-go for CI (exit 0, 5 or 6).
    ///
    /// Example: evalctl compare main:evals/llama.yaml evals/llama.yaml --format markdown --gate gate.yaml
    Compare(commands::cluster::CompareArgs),
    /// Write the scores of one or more stacks as a self-contained HTML
    /// page: a chart (one bar per stack with its 95% confidence interval),
    /// the results table (one column group per stack) and the units
    /// without scores. The time shown is SOURCE_DATE_EPOCH when set.
    ///
    /// Example: evalctl report evals/llama.yaml evals/mistral.yaml --out report.html
    Report(commands::report::ReportArgs),
    /// Send the stack's results on: to an MLflow tracking server (one run
    /// per task unit; exporting again changes nothing unless the results
    /// did), or the results report to a JSON or CSV file. Without --to,
    /// to the config's `execution.auto_export` destinations.
    ///
    /// Example: evalctl export evals/llama.yaml --to mlflow --tracking-uri http://mlflow:5000
    Export(commands::export::ExportArgs),
    /// Print the batch, server and client logs of a unit's latest job.
    ///
    /// Usage: evalctl logs [CONFIG] NODE [--follow]
    ///
    /// Example: evalctl logs evals/llama.yaml gsm8k --follow
    Logs(commands::cluster::LogsArgs),
    /// Cancel whole resume chains (all units, or the ones named), pending
    /// successors first so none wakes up; results stay on disk.
    ///
    /// Usage: evalctl cancel [CONFIG] [NODE...]
    ///
    /// Example: evalctl cancel evals/llama.yaml gsm8k
    Cancel(commands::cluster::CancelArgs),
    /// Inspect or repair a stack's recorded state and lock.
    State {
        #[command(subcommand)]
        command: commands::cluster::StateCommand,
    },
    /// Print the JSON Schema of the config.
    ///
    /// Example: evalctl schema --draft 07 > evalctl.schema.json
    Schema {
        /// Schema flavour: 2020-12 (what validate uses) or 07 (editors; accepts ${...} and ???).
        #[arg(long, value_enum, default_value = "2020-12")]
        draft: DraftArg,
        /// `markdown`: the config reference (docs/config.md) instead of the schema.
        #[arg(long, value_enum, default_value = "json")]
        format: SchemaFormat,
    },
    /// List the task catalog (task names, harnesses, containers).
    ///
    /// Example: evalctl tasks 'mmlu*' --json
    Tasks {
        /// Show tasks whose `harness.task` name contains this (`*` matches anything).
        pattern: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a config from the older env-var dialect into the newer one.
    ///
    /// Prints the result; comments and layout are kept. The result must
    /// parse to the same data in the newer dialect; what cannot be rewritten
    /// safely (flow style, anchors, block scalars where values change) is
    /// refused at its line, exit 1, and the file is left untouched.
    ///
    /// Example: evalctl migrate old.yaml > new.yaml
    Migrate {
        /// The config file to rewrite.
        file: PathBuf,
        /// Write the result back to FILE (atomically, keeping its
        /// permissions) instead of printing it.
        #[arg(short, long)]
        in_place: bool,
    },
    /// Print a shell completion script.
    ///
    /// Example: evalctl completions bash > /etc/bash_completion.d/evalctl
    Completions {
        /// Shell to generate for.
        shell: clap_complete::Shell,
    },
}

/// Schema flavours of `schema`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DraftArg {
    /// JSON Schema 2020-12: the schema `validate` uses.
    #[value(name = "2020-12")]
    D2020_12,
    /// JSON Schema draft-07 for editors: also accepts `${...}` and `???`.
    #[value(name = "07")]
    D07,
}

/// Output formats of `schema`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFormat {
    /// The JSON Schema.
    Json,
    /// The config reference, a Markdown page.
    Markdown,
}

/// Parses the command line, runs it and returns its exit status.
pub fn main() -> ExitStatus {
    match Cli::try_parse() {
        Ok(cli) => run(cli),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { ExitStatus::Failure } else { ExitStatus::Success }
        }
    }
}

/// Executes a parsed command line.
pub fn run(cli: Cli) -> ExitStatus {
    let verbose = cli.verbose || std::env::var_os("EVALCTL_TRACE").is_some();
    let p = Printer::new(Sources::new(), cli.quiet, verbose);
    let result = dispatch(cli.command, &p);
    p.finish(result)
}

fn dispatch(command: Command, p: &Printer) -> Result<ExitStatus> {
    use commands::{apply, cluster, config, export, plan, report};
    match command {
        Command::Validate { args } => config::validate(&args, p),
        Command::Render { args, out } => config::render(&args, &out, p),
        Command::Graph { args, format } => config::graph(&args, format, p),
        Command::Plan(a) => plan::plan(&a, p),
        Command::Apply(a) => apply::apply(&a, p),
        Command::Diff(a) => plan::diff(&a, p),
        Command::Status(a) => cluster::status(&a, p),
        Command::Results(a) => cluster::results(&a, p),
        Command::Compare(a) => cluster::compare(&a, p),
        Command::Report(a) => report::report(&a, p),
        Command::Export(a) => export::export(&a, p),
        Command::Logs(a) => cluster::logs(&a, p),
        Command::Cancel(a) => cluster::cancel(&a, p),
        Command::State { command } => cluster::state(&command, p),
        Command::Schema { draft, format } => {
            p.out(&match format {
                SchemaFormat::Json => crate::config::schema::schema_text(match draft {
                    DraftArg::D2020_12 => Draft::D2020_12,
                    DraftArg::D07 => Draft::D07,
                }),
                SchemaFormat::Markdown => crate::config::reference::markdown(),
            })?;
            Ok(ExitStatus::Success)
        }
        Command::Tasks { pattern, json } => config::tasks(pattern.as_deref(), json, p),
        Command::Migrate { file, in_place } => config::migrate(&file, in_place, p),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "evalctl", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
    }
}

/// Leaves a large value to the end of the process instead of freeing it:
/// a compiled stack of 10,000 tasks is millions of small allocations, and
/// freeing them one by one costs a sixth of the command's time right
/// before the operating system reclaims them all at once.
pub(crate) fn leak<T>(value: T) {
    std::mem::forget(value);
}
