//! Everything evalctl runs on a login node, and how it reads the answer.
//!
//! Each operation on a cluster (refresh, lock, apply, cancel, logs) is one
//! bash program sent through [`Cluster::run`] in one round trip. The
//! programs are built here and only here, with `shell!` (every value a
//! quoted word: [`encoding`]); they answer with reply lines that one
//! parser reads ([`protocol`]); the files they touch are described in
//! [`layout`]. [`run`] sends a program and checks it ran to its end.

pub mod cancel;
pub mod encoding;
pub mod layout;
pub mod lock;
pub mod logs;
pub mod probe;
pub mod protocol;
pub mod refresh;
pub mod submit;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::shell::Code;

pub use encoding::Snippet;
pub use lock::LockInfo;
pub use protocol::Reply;

/// A program for the login node, built from snippets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program(Snippet);

impl Program {
    pub fn new() -> Program {
        Program::default()
    }

    pub fn push(&mut self, s: Snippet) {
        self.0.push(s);
    }

    pub fn code(&mut self, c: Code) {
        self.0.code(c);
    }

    /// This program, then `next` (e.g. take the lock, then refresh).
    pub fn then(mut self, next: Program) -> Program {
        self.0.push(next.0);
        self
    }

    /// The program's text (without the prelude [`run`] adds).
    pub fn text(&self) -> &str {
        self.0.as_str()
    }

    /// The bytes sent: `set -u`, the reply functions, the program.
    pub fn full_text(&self) -> String {
        format!("set -u\n{}{}", protocol::PRELUDE.0, self.text())
    }
}

impl From<Snippet> for Program {
    fn from(s: Snippet) -> Program {
        Program(s)
    }
}

/// What a program printed: its replies in order, and the text itself.
#[derive(Clone, Debug, Default)]
pub struct Replies {
    pub replies: Vec<Reply>,
    pub stdout: String,
}

impl Replies {
    pub fn from_stdout(stdout: String) -> Replies {
        Replies { replies: protocol::parse(&stdout), stdout }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Reply> {
        self.replies.iter()
    }

    pub fn contains(&self, r: &Reply) -> bool {
        self.replies.contains(r)
    }
}

/// Runs a program (one round trip); an error unless it printed `EVALCTL end`.
pub fn run(cluster: &dyn Cluster, program: &Program) -> Result<Replies, Error> {
    let full = program.full_text();
    let out = cluster.run(full.as_bytes())?;
    let replies = Replies::from_stdout(out.stdout_text());
    if !replies.contains(&Reply::End) {
        let err = out.stderr_text();
        return Err(Error::from(format!(
            "the program run on {} stopped early (exit {}): {}",
            cluster.target().describe(),
            out.status,
            err.lines().last().unwrap_or("no output")
        )));
    }
    Ok(replies)
}
