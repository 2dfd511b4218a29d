#!/usr/bin/env bash
# tests/cluster/smoke.sh - quick end-to-end check of evalctl's test cluster
# (started by tests/cluster/up.sh). Everything goes through ssh as the test
# user, over one ControlMaster connection, exactly as evalctl talks to a
# cluster. Takes ~20-30 s. Prints "N passed, M failed"; exit 0 only if all pass.
#
# Needs read access to the cluster's identity file (root-owned, so run as
# root). Uses python3 for the JSON checks if it is installed.
# Note: it sets node n2 DOWN for a moment (and resumes it): jobs of others
# running on n2 at that moment are requeued.
#
# Knob: EVALCTL_CLUSTER_STATE (default /tmp/evalctl-cluster), as for up.sh.
set -uo pipefail
STATE=${EVALCTL_CLUSTER_STATE:-/tmp/evalctl-cluster}
INFO=$STATE/cluster.env
[ -r "$INFO" ] || { echo "smoke.sh: $INFO missing: run tests/cluster/up.sh first" >&2; exit 1; }
# shellcheck source=/dev/null
. "$INFO"
SHARED=$EVALCTL_CLUSTER_SHARED
T0=$(date +%s)
CMDIR=$(mktemp -d)   # short path: ControlPath must fit a unix socket address
SSH=(ssh -F "$EVALCTL_CLUSTER_SSH_CONFIG" -o ControlMaster=auto -o "ControlPath=$CMDIR/%C"
     -o ControlPersist=60 "$EVALCTL_CLUSTER_SSH_ALIAS")
RUN=smoke-$(date +%Y%m%d-%H%M%S)-$$
OUT=$SHARED/$RUN
PASS=0; FAIL=0
JOBS=()     # to cancel on exit
N2_DOWN=0
ok()  { PASS=$((PASS+1)); echo "ok   - $*"; }
bad() { FAIL=$((FAIL+1)); echo "FAIL - $*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
r() { "${SSH[@]}" "$@"; }
cleanup() {
  [ ${#JOBS[@]} -gt 0 ] && r "scancel ${JOBS[*]}" >/dev/null 2>&1
  [ $N2_DOWN = 1 ] && r "scontrol update nodename=n2 state=resume" >/dev/null 2>&1
  [ "$FAIL" = 0 ] && [ "$PASS" -gt 0 ] && rm -rf "$OUT"   # keep the job outputs only after a failure
  "${SSH[@]:0:${#SSH[@]}-1}" -O exit "$EVALCTL_CLUSTER_SSH_ALIAS" >/dev/null 2>&1
  rm -rf "$CMDIR"
}
trap cleanup EXIT

# sbatch --parsable ARGS...: prints the job id (or nothing)
sb() { local id; id=$(r "sbatch --parsable $*" | cut -d';' -f1); [[ "$id" =~ ^[0-9]+$ ]] && JOBS+=("$id"); echo "$id"; }
# wait_acct JOBID REGEX SECONDS: poll sacct (lags slurmctld by a few s) until the state matches
wait_acct() {
  local s="" i
  for ((i=0; i<$3*4; i++)); do
    s=$(r "sacct -n -X -P -o State -j $1" 2>/dev/null | tail -1 | awk '{print $1}')
    [[ "$s" =~ ^($2)$ ]] && { echo "$s"; return 0; }
    sleep 0.25
  done
  echo "${s:-none}"; return 1
}
# json_ok PY_EXPR: stdin is JSON, bound to d; true if PY_EXPR holds
json_ok() {
  if command -v python3 >/dev/null; then
    python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if ($1) else 1)"
  else
    grep -q '"jobs"'   # no python3: at least it looks like the right document
  fi
}
# json_check REMOTE_CMD PY_EXPR: run REMOTE_CMD over ssh, test its JSON output
json_check() { r "$1" 2>/dev/null | json_ok "$2"; }
# acct_rows IDS: poll sacct --parsable2 until the 3 smoke jobs show up complete
acct_rows() {
  local out="" i
  for ((i=0; i<40; i++)); do
    out=$(r "sacct -n -X --parsable2 -o JobID,JobName,Partition,Account,State,ExitCode,Comment -j $1" 2>/dev/null)
    [ "$(grep -cE '^[0-9]+\|smoke-(cpu|gpu|urgent)\|(cpu|gpu|urgent)\|research\|COMPLETED\|0:0\|smoke$' <<<"$out")" = 3 ] && return 0
    sleep 0.25
  done
  echo "  (sacct: $(paste -sd' ' - <<<"$out"))"; return 1
}
has_line() { grep -qxF -- "$1" <<<"$out"; }
node_state() { r "sinfo -h -n $1 -o %t" 2>/dev/null | head -1; }
wait_node() { # NODE REGEX SECONDS
  local s="" i
  for ((i=0; i<$3*4; i++)); do s=$(node_state "$1"); [[ "$s" =~ ^($2)$ ]] && return 0; sleep 0.25; done
  echo "  (node $1 is '$s')"; return 1
}

echo "# ssh"
check "ssh as $EVALCTL_CLUSTER_USER to $EVALCTL_CLUSTER_HOST:$EVALCTL_CLUSTER_PORT (alias $EVALCTL_CLUSTER_SSH_ALIAS)" \
  test "$(r id -un 2>/dev/null)" = "$EVALCTL_CLUSTER_USER"
check "explicit ssh with identity + known_hosts (StrictHostKeyChecking=yes)" \
  test "$(ssh -p "$EVALCTL_CLUSTER_PORT" -i "$EVALCTL_CLUSTER_IDENTITY" -o IdentitiesOnly=yes -o BatchMode=yes \
          -o UserKnownHostsFile="$EVALCTL_CLUSTER_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
          "$EVALCTL_CLUSTER_USER@$EVALCTL_CLUSTER_HOST" echo hi 2>/dev/null)" = hi
r "mkdir -p $OUT" || { echo "cannot reach the cluster over ssh"; exit 1; }

echo "# nodes"
nodes=""
for ((i=0; i<60; i++)); do
  nodes=$(r "sinfo -h -N -o '%N %t'" 2>/dev/null | sort -u)
  [ "$(grep -cE ' idle$' <<<"$nodes")" = 3 ] && break
  sleep 0.25
done
if [ "$(grep -cE ' idle$' <<<"$nodes")" = 3 ]; then
  ok "sinfo: 3 nodes idle ($(awk '{print $1}' <<<"$nodes" | paste -sd, -))"
elif [ "$(wc -l <<<"$nodes")" = 3 ] && ! grep -vqE ' (idle|mix|alloc|comp)$' <<<"$nodes"; then
  ok "sinfo: 3 nodes up, some busy with other jobs ($(paste -sd, - <<<"$nodes"))"
else
  bad "sinfo: 3 nodes idle (got: $(paste -sd, - <<<"$nodes"))"
fi

echo "# sbatch in every partition"
declare -A PJ=()
for p in cpu gpu urgent; do
  extra=""; [ "$p" = gpu ] && extra="--gres=gpu:1"
  PJ[$p]=$(sb --job-name=smoke-$p --comment=smoke --time=00:01:00 --account=research --partition=$p $extra \
             "--output=$OUT/%x-%j.out" "--wrap='echo partition=\$SLURM_JOB_PARTITION gpus=\${CUDA_VISIBLE_DEVICES:-none}'")
  check "sbatch --parsable -p $p prints a job id (${PJ[$p]:-none})" test -n "${PJ[$p]}"
done
H=$(sb --hold --job-name=smoke-held --time=00:01:00 "--output=$OUT/%x-%j.out" "--wrap='echo released'")
check "sbatch --hold prints a job id (${H:-none})" test -n "$H"
check "squeue --json lists the held job as PENDING" \
  json_check "squeue --json" "any(j['job_id']==${H:-0} and j['job_state']=='PENDING' for j in d['jobs'])"
for p in cpu gpu urgent; do
  [ -n "${PJ[$p]}" ] || { bad "job in $p completed (not submitted)"; continue; }
  s=$(wait_acct "${PJ[$p]}" 'COMPLETED|FAILED|CANCELLED.*|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY' 30)
  check "job ${PJ[$p]} in $p -> $s" test "$s" = COMPLETED
done
check "gpu job got a fake GPU, cpu job none" bash -c "grep -qx 'partition=gpu gpus=0' $OUT/smoke-gpu-${PJ[gpu]}.out && grep -qx 'partition=cpu gpus=none' $OUT/smoke-cpu-${PJ[cpu]}.out"
IDS=$(IFS=,; echo "${PJ[*]}")
check "sacct --parsable2 shows the three jobs COMPLETED 0:0" acct_rows "$IDS"
check "sacct --json parses, 3 jobs COMPLETED" \
  json_check "sacct --json -j $IDS" "len(d['jobs'])==3 and all(j['state']['current']=='COMPLETED' for j in d['jobs'])"

echo "# held job"
sleep 2
st=$(r "squeue -h -j $H -o '%T %r'" 2>/dev/null)
check "held job stays PENDING ($st)" bash -c "[[ '$st' =~ ^PENDING\ JobHeld ]]"
check "scontrol release $H" r "scontrol release $H"
s=$(wait_acct "$H" 'COMPLETED|FAILED|CANCELLED.*' 30)
check "released job -> $s" test "$s" = COMPLETED

echo "# Pyxis stand-in"
check "srun --container-image=x --container-mounts=$SHARED:/results true" \
  r "srun -p cpu --time=00:01:00 --container-image=x --container-mounts=$SHARED:/results true"
echo "from-host" > "$OUT/marker"
out=$(r "srun -p cpu --time=00:01:00 --container-image=x --container-mounts=$SHARED:/results bash -c 'cat /results/$RUN/marker && echo from-step > /results/$RUN/written && findmnt -n -o TARGET /results'" 2>&1)
check "/results is a mount inside the step and shows the shared dir" eval 'has_line from-host && has_line /results'
check "a file written to /results in the step is in the shared dir" test "$(cat "$OUT/written" 2>/dev/null)" = from-step
check "/results does not exist outside the step" r "test ! -e /results"

echo "# node state as $EVALCTL_CLUSTER_USER (AdminLevel=Admin)"
if r "scontrol update nodename=n2 state=down reason=smoke-test"; then
  N2_DOWN=1; ok "scontrol update nodename=n2 state=down over ssh"
else
  bad "scontrol update nodename=n2 state=down over ssh"
fi
check "sinfo shows n2 down" wait_node n2 'down' 10
check "scontrol update nodename=n2 state=resume over ssh" r "scontrol update nodename=n2 state=resume"
if wait_node n2 'idle|mix|alloc' 15; then N2_DOWN=0; ok "n2 back up"; else bad "n2 back up"; fi

JOBS=()
echo
echo "$PASS passed, $FAIL failed ($(( $(date +%s) - T0 )) s)"
[ "$FAIL" = 0 ]
