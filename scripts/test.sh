#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit, integration and
# property tests. Needs only a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --quiet
