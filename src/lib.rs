//! evalctl: declarative plan/apply for LLM evaluations on Slurm clusters.
//!
//! The crate is a pipeline: `config` (load, compose, interpolate, validate)
//! → `catalog` (task names → harness images), with `diag` carrying source
//! locations through every stage and `cli` as the thin command layer.

pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod diag;
pub mod error;
pub mod graph;
pub mod ops;
pub mod plan;
pub mod remote;
pub mod render;
pub mod shell;
pub mod state;
pub mod status;
pub mod table;
