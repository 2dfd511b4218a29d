//! Refresh as the command layer calls it today; the programs and their
//! reading live in `crate::remote::refresh`, observation in
//! [`super::observe`].
// shim: removed when the command layer calls remote directly

pub use super::observe::observe;
pub use crate::remote::refresh::{Job, Refreshed};

/// The refresh program's text.
// shim: removed when the command layer calls remote directly
pub fn program(stack_dir: &str, stack: &str, since_epoch: u64) -> String {
    crate::remote::refresh::program(stack_dir, stack, since_epoch).text().to_owned()
}

/// The detail program's text (runs before [`program`]).
// shim: removed when the command layer calls remote directly
pub fn detail_program(stack_dir: &str) -> String {
    crate::remote::refresh::detail_program(stack_dir).text().to_owned()
}
