//! Arguments shared by several commands, declared once and flattened.

use std::path::PathBuf;

/// Options of every command that reads a config.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// The config file.
    #[arg(default_value = "evalctl.yaml")]
    pub config: PathBuf,
    #[command(flatten)]
    pub o: OverrideArgs,
}

/// `-o key.path=value`.
#[derive(clap::Args, Debug, Default)]
pub struct OverrideArgs {
    /// Override a value: `-o key.path=value` (repeatable); tasks by name:
    /// `-o evaluation.tasks.gsm8k.nemo_evaluator_config.config.params.limit_samples=10`.
    #[arg(short = 'o', long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// How to reach the cluster.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// ssh config file to use (default: ~/.ssh/config; env EVALCTL_SSH_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

/// Flags of the commands that plan a stack against its cluster.
#[derive(clap::Args, Debug)]
pub struct StackFlags {
    /// Run this unit again whatever its state (repeatable).
    #[arg(long, value_name = "NODE")]
    pub replace: Vec<String>,
    /// A budget: a plan that may use more GPU-hours (its upper bound) exits
    /// 7, and apply submits nothing.
    #[arg(long, value_name = "N")]
    pub max_gpu_hours: Option<f64>,
    /// Plan (and apply) only these units: names or globs (`gsm*`), repeatable.
    #[arg(long, value_name = "UNIT")]
    pub only: Vec<String>,
    /// Leave these units out: names or globs, repeatable.
    #[arg(long, value_name = "UNIT")]
    pub exclude: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub color: ColorArgs,
}

/// `--no-color`.
#[derive(clap::Args, Debug)]
pub struct ColorArgs {
    /// No colours.
    #[arg(long)]
    pub no_color: bool,
}

/// Output formats of `plan` and `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// For people; coloured on a terminal (NO_COLOR and --no-color turn it off).
    Text,
    /// A pull-request comment: summary, actions, diffs in a collapsed block.
    Markdown,
    /// A versioned JSON document.
    Json,
}

/// `[CONFIG] [NAMES...]` of `logs` and `cancel`: the first word is the
/// config when it names a YAML file or an existing file.
pub fn config_and_names(words: &[String]) -> (PathBuf, Vec<String>) {
    let is_config = |w: &String| w.ends_with(".yaml") || w.ends_with(".yml") || std::path::Path::new(w).is_file();
    match words.split_first() {
        Some((first, rest)) if is_config(first) => (PathBuf::from(first), rest.to_vec()),
        _ => (PathBuf::from("evalctl.yaml"), words.to_vec()),
    }
}

/// This process's command line as it is recorded (the lock's holder): the
/// value of an override that sets an environment variable is masked.
pub fn command_line() -> String {
    redact_command(std::env::args())
}

fn redact_command(args: impl Iterator<Item = String>) -> String {
    use crate::config::overrides::redacted;
    let mut out = vec![];
    let mut value_next = false;
    for a in args {
        let shown = if std::mem::take(&mut value_next) {
            redacted(&a)
        } else if a == "--override" {
            value_next = true;
            a
        } else if let Some(v) = a.strip_prefix("--override=") {
            format!("--override={}", redacted(v))
        } else if let Some(flags) = a.strip_prefix('-').filter(|f| !f.starts_with('-'))
            && let Some(at) = flags.find('o')
        {
            // Short flags may be clustered (`-qo KEY=VALUE`, `-oKEY=VALUE`).
            let (before, value) = flags.split_at(at + 1);
            value_next = value.is_empty();
            format!("-{before}{}", redacted(value))
        } else {
            a
        };
        out.push(shown);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_command_lines_mask_variable_values() {
        let line = |args: &[&str]| super::redact_command(args.iter().map(|s| (*s).to_owned()));
        assert_eq!(
            line(&["evalctl", "apply", "-o", "env_vars.T=sekrit", "-o", "execution.account=a"]),
            "evalctl apply -o env_vars.T=****** -o execution.account=a"
        );
        assert_eq!(
            line(&["evalctl", "-qoenv_vars.T=ab", "--override=env_vars.U=xy"]),
            "evalctl -qoenv_vars.T=** --override=env_vars.U=**"
        );
        assert_eq!(
            line(&["evalctl", "--override", "deployment.env_vars.T=abc"]),
            "evalctl --override deployment.env_vars.T=***"
        );
    }
}
