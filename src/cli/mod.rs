//! Command-line interface: argument parsing and dispatch only. Each command
//! calls into the pipeline and prints; machine output goes to stdout,
//! diagnostics to stderr.
//!
//! Exit codes: 0 success, 1 error (bad config, bad arguments, failure).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{self, schema::Draft};
use crate::diag::{self, Diagnostic, Sources};
use crate::{catalog, graph};

mod stack;

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

/// Options of every command that reads a config.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// The config file.
    #[arg(default_value = "evalctl.yaml")]
    pub config: PathBuf,
    /// Override a value: `-o key.path=value` (repeatable); tasks by name:
    /// `-o evaluation.tasks.gsm8k.nemo_evaluator_config.config.params.limit_samples=10`.
    #[arg(short = 'o', long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
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
    /// naming where `apply` reads each secret (never the values). Files of
    /// jobs that no longer exist are removed from DIR.
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
        format: GraphFormat,
    },
    /// Show what apply would change: refresh the stack from the cluster
    /// (one round trip) and diff every script that would change.
    ///
    /// Example: evalctl plan evals/llama.yaml --format markdown > plan.md
    Plan(stack::PlanArgs),
    /// Make the cluster match the config (or a plan saved with `plan --out`).
    ///
    /// Asks for confirmation on a terminal unless --auto-approve. Exit codes:
    /// 0 done, 1 error, 3 stack locked by another apply, 4 saved plan is stale.
    ///
    /// Example: evalctl apply evals/llama.yaml --auto-approve --lock-timeout 600
    Apply(stack::ApplyArgs),
    /// Script diff between two configs, without a cluster.
    ///
    /// Example: evalctl diff main/evals.yaml evals.yaml
    Diff(stack::DiffArgs),
    /// Where every unit of a stack stands: state, resume chain job ids,
    /// elapsed time, attempts, progress, results.
    ///
    /// Example: evalctl status evals/llama.yaml --json
    Status(stack::StatusArgs),
    /// Print the batch, server and client logs of a unit's latest job.
    ///
    /// Usage: evalctl logs [CONFIG] NODE [--follow]
    ///
    /// Example: evalctl logs evals/llama.yaml gsm8k --follow
    Logs(stack::LogsArgs),
    /// Cancel whole resume chains (all units, or the ones named), pending
    /// successors first so none wakes up; results stay on disk.
    ///
    /// Usage: evalctl cancel [CONFIG] [NODE...]
    ///
    /// Example: evalctl cancel evals/llama.yaml gsm8k
    Cancel(stack::CancelArgs),
    /// Inspect or repair a stack's recorded state and lock.
    State {
        #[command(subcommand)]
        command: stack::StateCommand,
    },
    /// Print the JSON Schema of the config.
    ///
    /// Example: evalctl schema --draft 07 > evalctl.schema.json
    Schema {
        /// Schema flavour: 2020-12 (what validate uses) or 07 (editors; accepts ${...} and ???).
        #[arg(long, value_enum, default_value = "2020-12")]
        draft: Draft,
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
    /// Prints the result; comments and layout are kept.
    ///
    /// Example: evalctl migrate old.yaml > new.yaml
    Migrate {
        /// The config file to rewrite.
        file: PathBuf,
        /// Write the result back to FILE instead of printing it.
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

/// Output formats of `schema`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFormat {
    /// The JSON Schema.
    Json,
    /// The config reference, a Markdown page.
    Markdown,
}

/// Output formats of `graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A versioned JSON document.
    Json,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    run(cli)
}

/// Executes a parsed command line.
pub fn run(cli: Cli) -> i32 {
    if cli.verbose {
        crate::apply::driver::set_verbose(true);
    }
    let sources = Sources::new();
    let result = match cli.command {
        Command::Plan(a) => return finish(stack::plan(&a, cli.quiet, &sources), &sources),
        Command::Apply(a) => return finish(stack::apply(&a, cli.quiet, &sources), &sources),
        Command::Diff(a) => return finish(stack::diff(&a, cli.quiet, &sources), &sources),
        Command::Status(a) => return finish(stack::status(&a, cli.quiet, &sources), &sources),
        Command::Logs(a) => return finish(stack::logs(&a, cli.quiet, &sources), &sources),
        Command::Cancel(a) => return finish(stack::cancel(&a, cli.quiet, &sources), &sources),
        Command::State { command } => return finish(stack::state(&command, cli.quiet, &sources), &sources),
        Command::Validate { args } => validate(&args, cli.quiet, &sources),
        Command::Render { args, out } => render(&args, &out, cli.quiet, &sources),
        Command::Graph { args, format } => graph_cmd(&args, format, cli.quiet, &sources),
        Command::Schema { draft, format: SchemaFormat::Json } => print_out(&config::schema::schema_text(draft)),
        Command::Schema { format: SchemaFormat::Markdown, .. } => print_out(&config::reference::markdown()),
        Command::Tasks { pattern, json } => tasks(pattern.as_deref(), json),
        Command::Migrate { file, in_place } => migrate(&file, in_place, &sources),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "evalctl", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(diags) => {
            eprint!("{}", diag::render_all(&diags, &sources));
            let n = diags.iter().filter(|d| d.is_error()).count();
            if n > 1 {
                eprintln!("evalctl: {n} errors");
            }
            1
        }
    }
}

type CmdResult = Result<(), Vec<Diagnostic>>;

/// Prints a command's diagnostics and returns its exit code.
fn finish(result: Result<i32, Vec<Diagnostic>>, sources: &Sources) -> i32 {
    match result {
        Ok(code) => code,
        Err(diags) => {
            eprint!("{}", diag::render_all(&diags, sources));
            let n = diags.iter().filter(|d| d.is_error()).count();
            if n > 1 {
                eprintln!("evalctl: {n} errors");
            }
            1
        }
    }
}

pub(crate) fn print_out(s: &str) -> CmdResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(vec![Diagnostic::error(None, format!("cannot write output: {e}"))]),
    }
}

pub(crate) fn warn(diags: &[Diagnostic], sources: &Sources, quiet: bool) {
    if !quiet && !diags.is_empty() {
        eprint!("{}", diag::render_all(diags, sources));
    }
}

fn validate(args: &ConfigArgs, quiet: bool, sources: &Sources) -> CmdResult {
    let (loaded, _) = compile(args, quiet, sources)?;
    if !quiet {
        let names: Vec<&str> = loaded.tasks.iter().map(|t| t.name.as_str()).collect();
        print_out(&format!(
            "{}: valid (stack `{}`, {} task{}: {}; deployment: {}; topology: {})\n",
            args.config.display(),
            loaded.stack,
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            serde_json::to_value(loaded.config.deployment.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            serde_json::to_value(loaded.config.execution.topology)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ))?;
    }
    Ok(())
}

/// Loads, validates and builds the graph of a config, printing warnings.
pub(crate) fn compile(
    args: &ConfigArgs,
    quiet: bool,
    sources: &Sources,
) -> Result<(config::Loaded, graph::JobGraph), Vec<Diagnostic>> {
    let loaded = config::load(&args.config, &args.overrides, sources).map_err(|f| f.diagnostics)?;
    warn(&loaded.warnings, sources, quiet);
    let (g, graph_warnings) = graph::build(&loaded)?;
    warn(&graph_warnings, sources, quiet);
    Ok((loaded, g))
}

fn graph_cmd(args: &ConfigArgs, format: GraphFormat, quiet: bool, sources: &Sources) -> CmdResult {
    let (_, g) = compile(args, quiet, sources)?;
    let text = match format {
        GraphFormat::Dot => g.to_dot(),
        GraphFormat::Json => g.to_json().map(|v| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"),
    }
    .map_err(|e| vec![Diagnostic::error(None, e)])?;
    print_out(&text)
}

fn render(args: &ConfigArgs, out: &Path, quiet: bool, sources: &Sources) -> CmdResult {
    let (loaded, g) = compile(args, quiet, sources)?;
    let rendered = crate::render::render(&loaded, &g)?;
    let io = |e: std::io::Error, what: &Path| {
        vec![Diagnostic::error(None, format!("cannot write `{}`: {e}", what.display()))]
    };
    std::fs::create_dir_all(out).map_err(|e| io(e, out))?;
    let mut written = std::collections::BTreeSet::new();
    for job in &rendered.jobs {
        let path = out.join(format!("{}.sbatch", job.id));
        std::fs::write(&path, &job.script).map_err(|e| io(e, &path))?;
        written.insert(path);
        for group in job.secrets.keys() {
            let path = out.join(format!("{}.{group}.secrets.env", job.id));
            std::fs::write(&path, job.secrets_template(group)).map_err(|e| io(e, &path))?;
            written.insert(path);
        }
    }
    // Files of jobs that no longer exist would make two renders differ.
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let p = e.path();
            let ours = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".sbatch") || n.ends_with(".secrets.env"));
            if ours && !written.contains(&p) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    if !quiet {
        eprintln!("{}: {} job script(s) written to {}", args.config.display(), rendered.jobs.len(), out.display());
    }
    Ok(())
}

fn tasks(pattern: Option<&str>, json: bool) -> CmdResult {
    let found = catalog::catalog().search(pattern);
    if json {
        let text = serde_json::to_string_pretty(&found).unwrap_or_default();
        return print_out(&format!("{text}\n"));
    }
    if found.is_empty() {
        return Err(vec![Diagnostic::error(None, format!("no task matches `{}`", pattern.unwrap_or_default()))]);
    }
    let header = ["TASK", "HARNESS", "ENDPOINTS", "CONTAINER"];
    let rows: Vec<[String; 4]> = found
        .iter()
        .map(|t| [t.name.clone(), t.harness.clone(), t.endpoint_types.join(","), t.container.clone()])
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 4]| {
        let l = cells.iter().zip(width).map(|(c, w)| format!("{c:w$}")).collect::<Vec<_>>().join("  ");
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3]]);
    }
    print_out(&out)
}

fn migrate(file: &Path, in_place: bool, sources: &Sources) -> CmdResult {
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![Diagnostic::error(None, format!("cannot read `{}`: {e}", file.display()))])?;
    let m = config::migrate::migrate(&file.display().to_string(), &text, sources).map_err(|d| vec![d])?;
    warn(&m.warnings, sources, false);
    if in_place {
        std::fs::write(file, &m.text)
            .map_err(|e| vec![Diagnostic::error(None, format!("cannot write `{}`: {e}", file.display()))])?;
        eprintln!("{}: {} value(s) rewritten", file.display(), m.changes);
        Ok(())
    } else {
        print_out(&m.text)
    }
}
