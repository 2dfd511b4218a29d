#!/usr/bin/env bash
# Submission at scale on the test cluster (bash tests/cluster/up.sh first).
#
# For each N in JOBS (default "100 400 2000") jobs (N/2 tasks, each a first
# link and a resume link, held back by `--begin` so nothing runs):
#   - `evalctl apply` of the stack, from nothing;
#   - `evalctl plan` of the applied stack (the refresh of N jobs: "No changes.");
#   - `evalctl cancel` of the stack;
#   - a bare loop of N `sbatch --hold` calls over one SSH connection (one
#     ssh invocation running the loop on the login node) submitting the
#     same N scripts apply wrote, each resume link after its first link
#     (`--dependency=afternotok`, as apply does), and `scancel` of what it
#     submitted: what submitting the same jobs by hand costs.
# Then the same N/2 tasks with `execution.job_arrays: true` (first links in
# arrays of up to 1,000, resume links queued by the elements as they start:
# N/2 queued jobs): apply, refresh, cancel.
# Prints one line per measurement and the ratio apply / bare loop; each
# figure is the best of RUNS (default 2) runs.
#
# Usage: benches/apply.sh [N ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/evalctl
state=${EVALCTL_CLUSTER_STATE:-/tmp/evalctl-cluster}
cfg=$state/ssh/config
export EVALCTL_SSH_CONFIG=$cfg
host=evalctl-cluster
runs=${RUNS:-2}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 400 2000)
work=$(mktemp -d)
remote() { ssh -F "$cfg" "$host" "$@"; }
# Cancels this benchmark's jobs only (their names start with the stacks'),
# so other work of the same user on the cluster is left alone.
cancel_own() { remote "squeue -h -u \$(id -un) -o '%i %j' | awk '\$2 ~ /^evalctl:bench$$-/ {print \$1}' | xargs -r scancel"; }
trap 'cancel_own || true; rm -rf "$work"' EXIT

now() { date +%s.%N; }
# Best (lowest) of the figures on stdin.
best() { sort -g | head -1; }

config() { # N OUT_DIR [ARRAYS]
  local tasks=$(($1 / 2)) arrays=${3:+job_arrays: true, }
  echo "defaults: [{execution: slurm/default}, {deployment: none}, _self_]"
  echo "name: bench$$-$1"
  echo "execution: {hostname: $host, account: research, partition: cpu, output_dir: $2, gres: null, $arrays"
  echo "  walltime: '00:01:00', sbatch_extra_flags: {exclusive: false, begin: 'now+3600'}, mounts: {mount_home: false}}"
  echo "target: {api_endpoint: {url: 'http://127.0.0.1:9/v1/chat/completions', model_id: m}}"
  echo "evaluation:"
  echo "  tasks:"
  for ((i = 0; i < tasks; i++)); do echo "    - {name: gsm8k, id: t$i, container: 'evaluator:latest'}"; done
}

queued() { remote "squeue -h -r -u \$(id -un) -o %j | grep -c '^evalctl:bench$$-'" || true; }

# Times apply, plan (the refresh) and cancel of the config in bench.yaml,
# checking that apply queued QUEUED jobs: seconds in m_apply, m_refresh,
# m_cancel. Usage: measure QUEUED
measure() {
  local t0 t1 t2 t3 got rc=0
  t0=$(now)
  "$bin" apply "$work/bench.yaml" --auto-approve -q >"$work/apply.out" 2>"$work/apply.err" \
    || { cat "$work/apply.err" >&2; exit 1; }
  t1=$(now)
  got=$(queued)
  [ "$got" -eq "$1" ] || { echo "apply queued $got jobs, not $1" >&2; exit 1; }
  "$bin" plan "$work/bench.yaml" --detailed-exitcode -q >"$work/plan.out" 2>&1 || rc=$?
  t2=$(now)
  [ "$rc" -eq 0 ] || { echo "plan after apply exited $rc" >&2; cat "$work/plan.out" >&2; exit 1; }
  "$bin" cancel "$work/bench.yaml" -q >/dev/null
  t3=$(now)
  m_apply=$(echo "$t1 - $t0" | bc) m_refresh=$(echo "$t2 - $t1" | bc) m_cancel=$(echo "$t3 - $t2" | bc)
  cancel_own || true
}

for n in "${sizes[@]}"; do
  jobs_apply=() jobs_refresh=() jobs_cancel=() loop_t=() arrays_apply=() arrays_refresh=() arrays_cancel=()
  for ((r = 0; r < runs; r++)); do
    out=$state/shared/bench-$$-$n-$r
    config "$n" "$out" >"$work/bench.yaml"
    measure "$n"
    jobs_apply+=("$m_apply") jobs_refresh+=("$m_refresh") jobs_cancel+=("$m_cancel")

    # The bare loop: one SSH round trip running N sbatch calls.
    t0=$(now)
    remote "for d in $out/*/*/; do j=\$(sbatch --parsable --hold \"\$d/task.sbatch\") || exit 1; sbatch --parsable --hold --dependency=afternotok:\$j --kill-on-invalid-dep=yes \"\$d/resume.sbatch\" >/dev/null || exit 1; done"
    t1=$(now)
    got=$(queued)
    [ "$got" -eq "$n" ] || { echo "the loop queued $got jobs, not $n" >&2; exit 1; }
    remote "rm -rf $out"
    loop_t+=("$(echo "$t1 - $t0" | bc)")
    cancel_own
    # Let slurmctld forget the cancelled jobs before the next run.
    sleep 2

    # The same tasks with job arrays.
    out=$state/shared/bench-$$-$n-$r-arrays
    config "$n" "$out" arrays >"$work/bench.yaml"
    measure $((n / 2))
    arrays_apply+=("$m_apply") arrays_refresh+=("$m_refresh") arrays_cancel+=("$m_cancel")
    remote "rm -rf $out"
    sleep 2
  done
  a=$(printf '%s\n' "${jobs_apply[@]}" | best)
  l=$(printf '%s\n' "${loop_t[@]}" | best)
  printf '%5d jobs: apply %6.2f s | bare sbatch loop %6.2f s | ratio %.2f | refresh (plan) %5.2f s | cancel %5.2f s\n' \
    "$n" "$a" "$l" "$(echo "$a / $l" | bc -l)" \
    "$(printf '%s\n' "${jobs_refresh[@]}" | best)" "$(printf '%s\n' "${jobs_cancel[@]}" | best)"
  printf '%5d tasks with job arrays (%d queued jobs): apply %6.2f s | refresh (plan) %5.2f s | cancel %5.2f s\n' \
    "$((n / 2))" "$((n / 2))" "$(printf '%s\n' "${arrays_apply[@]}" | best)" \
    "$(printf '%s\n' "${arrays_refresh[@]}" | best)" "$(printf '%s\n' "${arrays_cancel[@]}" | best)"
done
