#!/usr/bin/env bash
# Benchmarks behind the README's performance figures.
#  1. `evalctl validate` of the seed example as a whole process (hyperfine).
#  2. The same work in process (criterion, `cargo bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
if ! command -v hyperfine >/dev/null; then
  echo "installing hyperfine (Debian package)" >&2
  apt-get install -y -qq hyperfine >/dev/null
fi
hyperfine --warmup 20 --runs 300 -N \
  'target/release/evalctl validate -q examples/slurm_llama_3_1_8b_instruct.yaml'
cargo bench --bench validate -- --noplot
cargo bench --bench scale -- --noplot
benches/scale.sh
