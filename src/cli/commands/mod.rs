//! One module per group of commands: each turns its arguments into an
//! operation's inputs, calls it, and prints what it returns.

pub mod apply;
pub mod cluster;
pub mod config;
pub mod export;
pub mod plan;
pub mod report;
