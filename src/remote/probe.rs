//! The feasibility probe: `sbatch --test-only` once per distinct job shape,
//! run in the same round trip as the refresh that `plan` and `apply` make.
//!
//! Exists so that the scheduler itself, not a copy of its rules, says
//! whether the jobs of a plan could run, before anything is submitted.
//! `--test-only` validates the request and estimates a start time without
//! creating a job. Each shape's `#SBATCH` lines reach sbatch as a tiny
//! script on its standard input (`#!/bin/sh`, the lines, `true`), exactly as
//! rendered, so sbatch reads the values with the rules it reads the real
//! scripts with. Reading the answers is `crate::plan::feasibility`.

use crate::plan::feasibility::Shape;
use crate::shell::{Code, ShellWord};

use super::Program;
use super::encoding::snippet;
use super::protocol;

/// Seconds one `sbatch --test-only` may take before it is given up (with
/// `timeout`, when the login node has it).
pub const TIMEOUT_S: u32 = 20;

/// The program that probes `shapes`: a `probe` reply per shape (its index,
/// sbatch's exit code and output), or one `probe-unavailable` reply when
/// there is no `sbatch`. Empty for no shapes. Runs before the refresh
/// program, which ends the round trip.
pub fn program(shapes: &[Shape]) -> Program {
    let mut p = Program::new();
    if shapes.is_empty() {
        return p;
    }
    p.code(Code(
        "if command -v sbatch >/dev/null 2>&1; then\n  \
         if command -v timeout >/dev/null 2>&1; then evalctl_t=1; else evalctl_t=; fi\n",
    ));
    for (i, shape) in shapes.iter().enumerate() {
        p.push(snippet!(
            "  out=$(printf '%s' {} | ${{evalctl_t:+timeout {}}} sbatch --test-only 2>&1); rc=$?\n  ",
            ShellWord::from(shape.probe_script().as_str()),
            TIMEOUT_S
        ));
        p.push(protocol::probe(&i, &Code("\"$rc\""), &Code("\"${out:0:4000}\"")));
    }
    p.code(Code("else\n  "));
    p.push(protocol::probe_unavailable(&ShellWord::from("there is no sbatch on the login node")));
    p.code(Code("fi\n"));
    p
}
