//! Where output goes: results to stdout, messages and diagnostics to
//! stderr, each through `anstream`, which keeps colour only where that
//! stream is a terminal and honours `NO_COLOR`, `CLICOLOR_FORCE` and
//! `--no-color`. The printer is also the operations' [`Reporter`].

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};

use super::args::ClusterArgs;
use crate::cluster::{Cluster, Traced};
use crate::diag::{self, Diagnostic, Sources};
use crate::error::{Error, ExitStatus};
use crate::ops::{Reporter, Stack};
use crate::plan::Plan;
use crate::status::UnitStatus;

pub struct Printer {
    pub sources: Sources,
    /// Print only errors.
    pub quiet: bool,
    /// Print every round trip to the cluster (`--verbose`, `EVALCTL_TRACE`).
    pub verbose: bool,
    /// Show the plan apply carries out even when quiet (apply asks about it).
    pub show_plan: Cell<bool>,
    bar: RefCell<Option<indicatif::ProgressBar>>,
    last: RefCell<String>,
}

impl Printer {
    pub fn new(sources: Sources, quiet: bool, verbose: bool) -> Printer {
        let (bar, last) = (RefCell::new(None), RefCell::new(String::new()));
        Printer { sources, quiet, verbose, show_plan: Cell::new(!quiet), bar, last }
    }

    /// Connects to a stack's cluster, tracing round trips when verbose.
    pub fn connect(&self, stack: &Stack, args: &ClusterArgs) -> Result<Box<dyn Cluster + '_>, Error> {
        let inner = stack.connect(args.ssh_config.clone())?;
        if !self.verbose {
            return Ok(inner);
        }
        // Straight to stderr (as `err` writes), so the cluster stays `Sync`.
        let trace = |m: &str| {
            let _ = anstream::stderr().write_all(format!("evalctl: {m}\n").as_bytes());
        };
        Ok(Box::new(Traced { inner, trace: Box::new(trace) }))
    }

    /// Turns colour off for both streams (`--no-color`).
    pub fn no_color(&self, off: bool) {
        if off {
            anstream::ColorChoice::Never.write_global();
        }
    }

    /// Whether text written to stdout keeps its colours.
    pub fn color_out(&self) -> bool {
        anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
    }

    /// Whether text written to stderr keeps its colours.
    pub fn color_err(&self) -> bool {
        anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
    }

    /// Writes a result to stdout. A closed pipe (`| head`) is not an error.
    /// Text without escapes (JSON, markdown) goes out as it is; styled text
    /// through anstream, which drops styles where colour is off.
    pub fn out(&self, text: &str) -> Result<(), Error> {
        self.out_with(text.contains('\x1b'), |w| w.write_all(text.as_bytes()))
    }

    /// Writes a result to stdout as `write` produces it, buffered (a large
    /// plan is never held whole); `styled`: through anstream, as [`Self::out`].
    pub fn out_with(
        &self,
        styled: bool,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        let written = if styled {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, anstream::stdout().lock());
            write(&mut out).and_then(|_| out.flush())
        } else {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            write(&mut out).and_then(|_| out.flush())
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::msg(format!("cannot write output: {e}"))),
        }
    }

    /// Writes a message to stderr (always: callers decide about `quiet`).
    pub fn err(&self, text: &str) {
        let _ = anstream::stderr().write_all(text.as_bytes());
    }

    /// A message line on stderr unless quiet.
    pub fn note(&self, line: &str) {
        if !self.quiet {
            self.err(&format!("{line}\n"));
        }
    }

    /// Prints an error's diagnostics and returns its exit status.
    pub fn fail(&self, e: &Error) -> ExitStatus {
        let diags = e.diagnostics();
        self.err(&diag::render_all(&diags, &self.sources));
        let n = diags.iter().filter(|d| d.is_error()).count();
        if n > 1 {
            self.err(&format!("evalctl: {n} errors\n"));
        }
        e.exit_status()
    }

    /// Asks whether to apply the changes of several stacks (`apply PATH...`).
    pub fn confirm_stacks(&self, names: &[String]) -> bool {
        self.err(&format!("\nApply these changes to stacks {}? Only 'yes' applies: ", names.join(", ")));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        answer.trim() == "yes"
    }

    /// The exit status of a command's result, its error printed.
    pub fn finish(&self, r: Result<ExitStatus, Error>) -> ExitStatus {
        r.unwrap_or_else(|e| self.fail(&e))
    }
}

impl Reporter for Printer {
    fn warnings(&self, diags: &[Diagnostic]) {
        if !self.quiet && !diags.is_empty() {
            self.err(&diag::render_all(diags, &self.sources));
        }
    }

    fn info(&self, message: &str) {
        self.note(&format!("evalctl: {message}"));
    }

    fn plan(&self, plan: &Plan) {
        if self.show_plan.get() {
            self.err(&crate::plan::output::text(plan, self.color_err()));
        }
    }

    fn confirm(&self, plan: &Plan) -> bool {
        self.err(&format!("\nApply these changes to stack `{}`? Only 'yes' applies: ", plan.stack));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        answer.trim() == "yes"
    }

    fn waiting(&self, rows: &[UnitStatus]) {
        let tally = crate::status::Tally::of(rows);
        let summary = tally.to_string();
        let mut bar = self.bar.borrow_mut();
        if bar.is_none() && !self.quiet && std::io::stderr().is_terminal() {
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done {msg}",
            );
            let b = indicatif::ProgressBar::new(tally.total as u64);
            b.set_style(style.unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
            *bar = Some(b);
        }
        match bar.as_ref() {
            Some(b) => {
                b.set_position(tally.ended as u64);
                b.set_message(summary.clone());
                if tally.ended == tally.total {
                    b.finish();
                }
            }
            None if *self.last.borrow() != summary => self.note(&format!("evalctl: {summary}")),
            None => {}
        }
        *self.last.borrow_mut() = summary;
    }
}
