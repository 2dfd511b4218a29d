//! What a job is, as plain data: the lowering step (`lower`) decides every
//! value here from the config, and the script step (`script`) only spells
//! it as bash. Nothing in this module knows about shell text.

use serde::{Deserialize, Serialize};

/// The part a job plays in its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The first link of a task's chain.
    First,
    /// A task's resume link, queued to run if the previous link was cut short.
    Resume,
    /// A deployment job serving a model to the stack's tasks.
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::First => "first",
            Role::Resume => "resume",
            Role::Server => "server",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
