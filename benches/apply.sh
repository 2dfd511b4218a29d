#!/usr/bin/env bash
# Submission through SSH: `evalctl apply` of 100 jobs (50 tasks, each a
# first link and a resume link) against a bare loop of 100 `sbatch` calls
# over the same kind of SSH connection (a ControlMaster), on the test
# cluster. Prints wall times and SSH round trips. Needs the test cluster up
# (bash tests/cluster/up.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/evalctl
state=${EVALCTL_CLUSTER_STATE:-/tmp/evalctl-cluster}
cfg=$state/ssh/config
export EVALCTL_SSH_CONFIG=$cfg
work=$(mktemp -d)
out=$state/shared/bench-$$
trap 'ssh -F "$cfg" evalctl-cluster "scancel -u \$(id -un) --quiet" || true; cp "$work"/apply.err /tmp/apply-bench.err; rm -rf "$work"' EXIT

{
  echo "defaults: [{execution: slurm/default}, {deployment: none}, _self_]"
  echo "name: bench"
  echo "execution: {hostname: evalctl-cluster, account: research, partition: cpu, output_dir: $out, gres: null,"
  echo "  walltime: '00:01:00', sbatch_extra_flags: {exclusive: false, begin: 'now+3600'}, mounts: {mount_home: false}}"
  echo "target: {api_endpoint: {url: 'http://127.0.0.1:9/v1/chat/completions', model_id: m}}"
  echo "evaluation:"
  echo "  tasks:"
  for i in $(seq 1 50); do echo "    - {name: gsm8k, id: t$i, container: 'evaluator:latest'}"; done
} >"$work/bench.yaml"

# Count round trips: every remote program is one ssh invocation.
start=$(date +%s.%N)
EVALCTL_TRACE=1 "$bin" apply "$work/bench.yaml" --auto-approve -q >"$work/apply.out" 2>"$work/apply.err"
end=$(date +%s.%N)
jobs=$(ssh -F "$cfg" evalctl-cluster "squeue -h -u \$(id -un) -o %k | grep -c 'evalctl:bench/'")
trips=$(grep -c '^evalctl: round trip' "$work/apply.err" || true)
printf 'evalctl apply: %s jobs in %.2f s, %s SSH round trips\n' "$jobs" "$(echo "$end - $start" | bc)" "$trips"
ssh -F "$cfg" evalctl-cluster "scancel -u \$(id -un) --quiet"

# The bare loop, over one ControlMaster connection.
ctl=$work/cm.sock
ssh -F "$cfg" -o ControlMaster=yes -o ControlPath="$ctl" -o ControlPersist=60 -f -N evalctl-cluster
start=$(date +%s.%N)
for i in $(seq 1 100); do
  ssh -F "$cfg" -o ControlPath="$ctl" evalctl-cluster \
    "sbatch --parsable --hold --account=research --partition=cpu --time=00:01:00 --output=/dev/null --job-name=loop$i --wrap=true" >/dev/null
done
end=$(date +%s.%N)
printf 'sbatch loop: 100 jobs in %.2f s, 100 SSH round trips\n' "$(echo "$end - $start" | bc)"
ssh -F "$cfg" -o ControlPath="$ctl" -O exit evalctl-cluster 2>/dev/null || true
