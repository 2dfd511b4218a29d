#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit, integration,
# property and snapshot tests, shellcheck on rendered job scripts, and the
# end-to-end tests on the real test cluster (Slurm + sshd, brought up here
# from Debian packages; needs root). Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v script >/dev/null || need+=(bsdutils)
command -v ss >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The test cluster: idempotent, ~30 s the first time, under a second when up.
bash tests/cluster/up.sh >/dev/null

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --quiet
