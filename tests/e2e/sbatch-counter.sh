#!/bin/bash
# Stand-in for `sbatch` put first in PATH by tests/e2e_apply.rs for the local
# backend: records every call (one line per call in ../sbatch-calls beside
# its bin/ directory), then runs the real sbatch (path in ./real-sbatch) with
# the same arguments. Settings live in files, not variables: evalctl runs
# programs in a login-like environment, not its own.
here=$(cd "$(dirname "$0")" && pwd)
printf '%s %s\n' "$$" "$*" >>"$here/../sbatch-calls"
exec "$(cat "$here/real-sbatch")" "$@"
