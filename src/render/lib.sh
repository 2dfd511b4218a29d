# ---- evalctl job runtime (the same in every script evalctl renders) ----
# Status file: one line "<state> <job id> [detail]", state in running,
# completed, failed, interrupted, stopped. Chain file: one line per event,
# "<job id> <event> <epoch> [detail]", event in start, end, submit, stop;
# "<job id> submit <epoch> <next job id>" names a link's successor.
# Signal handlers run these, so they use no command substitution.

# The link's job id as Slurm lists it: `<array>_<index>` for a first link
# submitted as an element of a job array (`execution.job_arrays`).
EVALCTL_JOB=${SLURM_JOB_ID:-0}
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
  EVALCTL_JOB=${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID
fi

evalctl_log() { TZ=UTC0 printf '[evalctl %(%Y-%m-%dT%H:%M:%SZ)T] %s\n' -1 "$*"; }

evalctl_status() {
  printf '%s %s %s\n' "$1" "$EVALCTL_JOB" "${2:-}" >"$EVALCTL_DIR/status.tmp.$$" &&
    mv -f "$EVALCTL_DIR/status.tmp.$$" "$EVALCTL_DIR/status"
}

evalctl_chain() { printf '%s %s %s %s\n' "$EVALCTL_JOB" "$1" "${EPOCHSECONDS:-$(date +%s)}" "${2:-}" >>"$EVALCTL_DIR/chain"; }

# Loads the variables of one container group (secrets file written by
# `evalctl apply` in the job's folder, mode 0600) with tracing off.
evalctl_env() {
  { set +x; } 2>/dev/null
  if [ -f "${EVALCTL_PACK_DIR:-$EVALCTL_DIR}/secrets/$1.env" ]; then
    # shellcheck disable=SC1090
    . "${EVALCTL_PACK_DIR:-$EVALCTL_DIR}/secrets/$1.env"
  fi
  "evalctl_public_env_$1"
}

# Succeeds when URL answers HTTP 200 (curl, or bash's /dev/tcp without it).
evalctl_http_ok() {
  local url=$1 rest hostport path host port line
  if command -v curl >/dev/null 2>&1; then
    [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url")" = 200 ]
    return
  fi
  rest=${url#http://}
  hostport=${rest%%/*}
  path=/${rest#*/}
  [ "$rest" = "$hostport" ] && path=/
  host=${hostport%%:*}
  port=${hostport##*:}
  [ "$port" = "$hostport" ] && port=80
  exec 9<>"/dev/tcp/$host/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" >&9
  if ! read -r -t 5 line <&9; then
    exec 9>&-
    return 1
  fi
  exec 9>&-
  case $line in "HTTP/"*" 200"*) return 0 ;; *) return 1 ;; esac
}

# Succeeds when something accepts connections on HOST:PORT.
evalctl_listening() { (: <>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits until one of URLs is healthy (tried in turn, every 5 s) and sets
# EVALCTL_HEALTHY_URL to it; fails when process PID (if given) exits first
# or after TIMEOUT seconds.
# Usage: evalctl_wait_healthy PID TIMEOUT URL...
evalctl_wait_healthy() {
  local pid=$1 timeout=$2 deadline=$((SECONDS + $2)) url
  shift 2
  EVALCTL_HEALTHY_URL=
  evalctl_log "waiting for $* (up to ${timeout} s)"
  while :; do
    for url in "$@"; do
      if evalctl_http_ok "$url" 2>/dev/null; then
        EVALCTL_HEALTHY_URL=$url
        evalctl_log "$url is healthy"
        return 0
      fi
    done
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      evalctl_log "the model server exited before it became healthy"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      evalctl_log "the model server is not healthy after ${timeout} s"
      return 1
    fi
    sleep 5
  done
}

# Waits for a background process; signals handled by traps do not end the wait.
evalctl_wait() {
  local rc
  while :; do
    wait "$1"
    rc=$?
    if [ "$rc" -gt 128 ] && kill -0 "$1" 2>/dev/null; then
      continue
    fi
    return "$rc"
  done
}

# Waits for the evaluation (process PID) like evalctl_wait, watching the
# shared deployments NODE... it uses: when one's chain has ended (failed,
# stopped) the evaluation is stopped at once and the link fails (see
# evalctl_finish) instead of running on against a server that is gone.
# Usage: evalctl_wait_watching PID NODE...
evalctl_wait_watching() {
  local pid=$1 n state
  shift
  while kill -0 "$pid" 2>/dev/null; do
    for n in "$@"; do
      state=""
      read -r state _ 2>/dev/null <"$EVALCTL_STACK_DIR/$n/status"
      case $state in
        failed | stopped)
          evalctl_log "deployment $n has ended ($(cat "$EVALCTL_STACK_DIR/$n/status" 2>/dev/null)): stopping the evaluation"
          printf '%s\n' "$n" >"$EVALCTL_DIR/server-gone.$EVALCTL_JOB"
          evalctl_stop "$pid"
          break 2
          ;;
      esac
    done
    # In the background, so that a signal's trap runs at once.
    sleep 10 &
    wait "$!"
  done
  evalctl_wait "$pid"
}

# Stops background processes (srun forwards the signal to its tasks).
evalctl_stop() {
  local pid i
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
  for i in $(seq 1 30); do
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && break; done || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null; done
  return 0
}

# Final state of job $1 from accounting (retrying while it lags), else from
# slurmctld; empty when neither knows.
evalctl_job_state() {
  local s="" i
  for i in 1 2 3 4 5 6; do
    if ! s=$(sacct -j "$1" -X -n -P -o State 2>/dev/null | head -n 1); then
      s=""
      break
    fi
    s=${s%% *}
    case $s in "" | PENDING | RUNNING | REQUEUED | RESIZING | SUSPENDED | COMPLETING) s="" ;; *) break ;; esac
    [ "$i" -lt 6 ] && sleep 5
  done
  if [ -z "$s" ]; then
    s=$(scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p' | head -n 1)
    case $s in PENDING | RUNNING | COMPLETING | REQUEUED | SUSPENDED) s="" ;; esac
  fi
  printf '%s' "$s"
}

# Links started so far, and run time used by them (a link that left no
# end record used the time until the next one started, at most a walltime).
evalctl_links() { awk '$2 == "start"' "$EVALCTL_DIR/chain" 2>/dev/null | wc -l; }
evalctl_used_seconds() {
  awk -v wall="$EVALCTL_WALLTIME_S" -v now="${EPOCHSECONDS:-$(date +%s)}" '
    function cut(t) { d = t - s; return d < wall ? d : wall }
    $2 == "start" { if (open != "") total += cut($3); open = $1; s = $3 }
    $2 == "end" && $1 == open { total += $3 - s; open = "" }
    END { if (open != "") total += cut(now); print total + 0 }' "$EVALCTL_DIR/chain" 2>/dev/null || echo 0
}

# The job this link resumes: the one that queued it (chain file).
evalctl_prev_job() {
  awk -v me="$EVALCTL_JOB" '$2 == "submit" && $4 == me { p = $1 } END { print p }' "$EVALCTL_DIR/chain" 2>/dev/null
}

# A resume link runs only when the previous link was cut short (time limit,
# preemption, node failure) and the chain's limits allow it.
evalctl_resume_gate() {
  local prev state="" last used links
  prev=$(evalctl_prev_job)
  last=$(cat "$EVALCTL_DIR/status" 2>/dev/null)
  case ${last%% *} in
    completed | failed | stopped)
      # The previous link recorded its own end while its job still ran
      # (evalctl_finish), or the chain was cancelled: it is over, whatever
      # Slurm says of the job (one that completed just at its time limit
      # ends TIMEOUT).
      evalctl_log "the chain already ended: '${last}': not resuming"
      evalctl_chain stop "${last%% *}"
      return 1
      ;;
  esac
  [ -n "$prev" ] && state=$(evalctl_job_state "$prev")
  if [ -z "$state" ]; then
    state=INTERRUPTED
    evalctl_log "no record of job ${prev:-?} in Slurm; its last status was '${last:-none}': taking it as $state"
  fi
  case $state in
    TIMEOUT | PREEMPTED | NODE_FAIL | INTERRUPTED) ;;
    *)
      evalctl_log "job $prev ended $state: not resuming"
      evalctl_chain stop "$state"
      return 1
      ;;
  esac
  links=$(evalctl_links)
  if [ "$EVALCTL_MAX_LINKS" -gt 0 ] && [ "$links" -ge "$EVALCTL_MAX_LINKS" ]; then
    evalctl_log "resume limit reached: $links links (max_resume_links = $EVALCTL_MAX_LINKS)"
    evalctl_chain stop max_resume_links
    evalctl_status stopped max_resume_links
    return 1
  fi
  used=$(evalctl_used_seconds)
  if [ "$EVALCTL_MAX_WALLTIME_S" -gt 0 ] && [ "$used" -ge "$EVALCTL_MAX_WALLTIME_S" ]; then
    evalctl_log "max_walltime reached: ${used} s used of ${EVALCTL_MAX_WALLTIME_S} s"
    evalctl_chain stop max_walltime
    evalctl_status stopped max_walltime
    return 1
  fi
  evalctl_log "job ${prev:-?} ended ${state:-?}: resuming (link $((links + 1)), ${used} s used)"
}

# Records how this link's evaluation ended. RC is the client step's exit
# code; the harness's own exit code is what the step wrote to
# artifacts/.evalctl-exit-<job> inside the container as it ended
# (`interrupted`: the harness stopped on SIGTERM, which it exits 0 for). A link
# whose job Slurm is already ending (time limit, preemption, node failure:
# the job is no longer RUNNING) was cut short whatever RC says, and so was
# one whose step ended without that record while srun reported success (a
# step lost with its node can make srun exit 0) or, when Slurm cannot tell,
# a signal: the next link
# resumes it. Otherwise the recorded code 0 completes the chain, and any
# other code, or a step that failed before the harness ended (a failing
# pre_cmd, a container that did not start), fails it, as does a shared
# deployment that ended under it (evalctl_wait_watching). Sets EVALCTL_RC
# to the code the job exits with.
evalctl_finish() {
  local rc=$1 own code="" why
  own=$(scontrol show job "$EVALCTL_JOB" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p' | head -n 1)
  read -r code _ 2>/dev/null <"$EVALCTL_ARTIFACTS/.evalctl-exit-${SLURM_JOB_ID:-0}"
  why=no-exit-record
  [ "$code" = interrupted ] && why=harness-interrupted
  case $code in *[!0-9]*) code="" ;; esac
  EVALCTL_RC=$rc
  if [ -f "$EVALCTL_DIR/server-gone.$EVALCTL_JOB" ]; then
    [ "$rc" -eq 0 ] && EVALCTL_RC=1
    evalctl_status failed "server-gone $(cat "$EVALCTL_DIR/server-gone.$EVALCTL_JOB")"
    evalctl_chain end server-gone
  elif [ -n "$own" ] && [ "$own" != RUNNING ]; then
    evalctl_status interrupted "$own exit $rc"
    evalctl_log "the evaluation ended (exit $rc) while the job was ending ($own): link cut short"
  elif [ -z "$code" ] && { [ "$rc" -eq 0 ] || [ "$why" = harness-interrupted ] || { [ -z "$own" ] && [ "$rc" -gt 128 ]; }; }; then
    [ "$rc" -eq 0 ] && EVALCTL_RC=75
    evalctl_status interrupted "$why exit $rc"
    evalctl_log "the evaluation step ended (exit $rc) without the harness's exit code ($why): link cut short"
  elif [ -n "$code" ] && [ "$code" -eq 0 ]; then
    EVALCTL_RC=0
    evalctl_status completed
    evalctl_chain end completed
  else
    [ -n "$code" ] && EVALCTL_RC=$code
    evalctl_status failed "exit $EVALCTL_RC"
    evalctl_chain end "failed $EVALCTL_RC"
  fi
}

# Packs (the `packed` topology): a pack's job runs its tasks in turn, each
# in its own folder, which becomes EVALCTL_DIR while it runs (status, chain,
# artifacts, logs); the pack's folder keeps the job's own status and chain.
# Usage: evalctl_pack_task ID DIR. Fails, so the task is skipped, when the
# task already ended (completed, failed, stopped: apply removes the status
# of every task it runs again); a task cut short runs again, from its cache.
evalctl_pack_task() {
  local word=""
  read -r word _ <"$2/status" 2>/dev/null
  case $word in
    completed | failed | stopped)
      evalctl_log "task $1 already ended ($word): skipped"
      [ "$word" = completed ] || EVALCTL_PACK_FAILED=1
      return 1
      ;;
  esac
  export EVALCTL_DIR=$2 EVALCTL_ARTIFACTS=$2/artifacts EVALCTL_LOGS=$2/logs
  mkdir -p "$EVALCTL_ARTIFACTS" "$EVALCTL_LOGS"
  evalctl_chain start task
  evalctl_status running
  evalctl_log "task $1: running"
}
# After a task's evaluation (evalctl_finish): back to the pack's folder.
# Fails when the task was cut short, so the link ends and its resume link
# continues with that task; a failed task does not stop the others.
evalctl_pack_task_end() {
  local word=""
  read -r word _ <"$EVALCTL_DIR/status" 2>/dev/null
  export EVALCTL_DIR=$EVALCTL_PACK_DIR EVALCTL_ARTIFACTS=$EVALCTL_PACK_DIR/artifacts EVALCTL_LOGS=$EVALCTL_PACK_DIR/logs
  case $word in
    completed) ;;
    interrupted)
      evalctl_status interrupted task-cut-short
      return 1
      ;;
    *) EVALCTL_PACK_FAILED=1 ;;
  esac
  return 0
}
# The end of a pack's link once every task ran or was skipped: completed
# when every task completed, else failed (the tasks say which).
evalctl_pack_end() {
  if [ "$EVALCTL_PACK_FAILED" = 1 ]; then
    EVALCTL_RC=1
    evalctl_status failed tasks-failed
    evalctl_chain end tasks-failed
  else
    EVALCTL_RC=0
    evalctl_status completed
    evalctl_chain end completed
  fi
}

# Queues the next link, to run only if this one ends unsuccessfully, named
# with the link's ownership tag and given the user's comment, verbatim (on
# the command line: no `#SBATCH` line or SBATCH_* variable overrides them).
evalctl_submit_next() {
  local next
  # Not as an element of the array this link may be one of.
  if next=$(unset SLURM_ARRAY_JOB_ID SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_MAX SLURM_ARRAY_TASK_STEP
    sbatch --parsable --job-name="$EVALCTL_JOB_NAME" ${EVALCTL_COMMENT:+"--comment=$EVALCTL_COMMENT"} \
    --dependency="afternotok:$EVALCTL_JOB" --kill-on-invalid-dep=yes "$EVALCTL_DIR/resume.sbatch"); then
    next=${next%%;*}
    evalctl_chain submit "$next"
    evalctl_log "next link queued: job $next"
    evalctl_lane_moves_to "$next"
  else
    evalctl_log "could not queue the next link"
  fi
}

# A first link run as an element of a job array queues its own resume link
# as it starts (apply submits one sbatch per array, not one per element).
evalctl_array_element_next() {
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] || return 0
  evalctl_submit_next
}

# With `max_concurrent`, the chain's lane successor (`lane-next`: its job id
# and its own dependencies) waits for this chain to end: when a link queues
# the next one, the successor waits for that one instead (the link itself
# ends before it can start).
evalctl_lane_moves_to() {
  local succ="" base=""
  [ -f "$EVALCTL_DIR/lane-next" ] || return 0
  read -r succ base <"$EVALCTL_DIR/lane-next" || [ -n "$succ" ] || return 0
  if scontrol update JobId="$succ" Dependency="${base:+$base,}afterany:$1" >/dev/null 2>&1; then
    evalctl_log "lane: job $succ now waits for job $1"
  fi
}

# Sets variable $1 to the JSON string of $2, quotes included: `\`, `"` and
# control characters escaped, so no value can end the string.
evalctl_json_string() {
  local s=$2 i hex c
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  for ((i = 1; i < 32; i++)); do
    printf -v hex '%02x' "$i"
    printf -v c '%b' "\\x$hex"
    s=${s//"$c"/\\u00$hex}
  done
  printf -v "$1" '"%s"' "$s"
}
# Replaces the JSON string "NAME" (a whole string, never part of one) in
# the task's run config by the JSON string of VALUE.
# Usage: evalctl_subst NAME VALUE
evalctl_subst() {
  local json
  evalctl_json_string json "$2"
  EVALCTL_RUN_CONFIG=${EVALCTL_RUN_CONFIG//"\"$1\""/"$json"}
}
# Replaces the JSON string "NAME" by the JSON string of BASE_URL PATH.
evalctl_subst_url() { evalctl_subst "$1" "$2$3"; }

# A signal before the link recorded its end marks it interrupted (the
# first one says why: the time limit's warning comes before its TERM).
evalctl_on_signal() {
  local word=""
  read -r word _ <"$EVALCTL_DIR/status" 2>/dev/null
  case $word in
    completed | failed | stopped | interrupted) ;;
    *) evalctl_status interrupted "$1" ;;
  esac
  evalctl_log "received SIG$1"
}

# The model servers of this job, by key (`model`, or `aux-<name>` for an
# auxiliary deployment): instances, and each instance's head node and srun
# process ("<key>.<instance>").
declare -A EVALCTL_SRV_COUNT=() EVALCTL_SRV_HEAD=() EVALCTL_SRV_PROC=()

# Starts the instances of a model server in the background, on the job's
# nodes from index FIRST_NODE on. Each instance's container gets MASTER_IP
# (and MASTER_ADDR: its head's address), ALL_NODE_IPS (the addresses of all
# the server's nodes, comma-separated), NODES_PER_INSTANCE, INSTANCE_ID and
# PROC_ID; with PREFIX, also <PREFIX>_MASTER_IP and <PREFIX>_ALL_NODE_IPS.
# Usage: evalctl_start_servers KEY GROUP FIRST_NODE INSTANCES NODES_PER_INSTANCE TASKS_PER_INSTANCE [PREFIX]
# with EVALCTL_SRV_ARGS (srun container options) and EVALCTL_SRV_CMD set.
evalctl_start_servers() {
  local key=$1 group=$2 first=$3 instances=$4 npi=$5 tpi=$6 prefix=${7:-} i n ip head nodelist all tag="" log
  local -a nodes ips=()
  [ "$key" = model ] || tag="$key-"
  for n in "${EVALCTL_NODES[@]:first:instances*npi}"; do
    ip=$(getent ahostsv4 "$n" 2>/dev/null | awk 'NR == 1 { print $1 }')
    ips+=("${ip:-$n}")
  done
  all=$(IFS=,; printf '%s' "${ips[*]}")
  EVALCTL_SRV_COUNT[$key]=$instances
  for ((i = 0; i < instances; i++)); do
    nodes=("${EVALCTL_NODES[@]:first+i*npi:npi}")
    head=${nodes[0]}
    nodelist=$(IFS=,; printf '%s' "${nodes[*]}")
    ip=${ips[i*npi]}
    log="$EVALCTL_LOGS/server-$EVALCTL_JOB-$tag$i.log"
    (
      evalctl_env "$group"
      export MASTER_IP=$ip MASTER_ADDR=$ip ALL_NODE_IPS=$all NODES_PER_INSTANCE=$npi INSTANCE_ID=$i
      [ -n "$prefix" ] && export "${prefix}_MASTER_IP=$ip" "${prefix}_ALL_NODE_IPS=$all"
      exec srun --overlap --nodes="$npi" --ntasks="$tpi" --nodelist="$nodelist" "${EVALCTL_SRV_ARGS[@]}" \
        bash -c 'export PROC_ID=$SLURM_PROCID; '"$EVALCTL_SRV_CMD"
    ) >"$log" 2>&1 &
    EVALCTL_SRV_HEAD[$key.$i]=$head
    EVALCTL_SRV_PROC[$key.$i]=$!
    EVALCTL_SERVER_PIDS+=("$!")
    evalctl_log "${tag}server instance $i starting on $nodelist (log: $log)"
  done
}

# Waits until every instance of server KEY answers on PORT/HEALTH; with
# several instances, starts a load balancer in front of them on the job's
# first node. The batch shell and the harness run on the job's first node:
# an instance there is reached on the loopback address (a server listening
# on 127.0.0.1 only is reached), else on its node's name, as are instances
# on other nodes. Sets EVALCTL_BASE_URL, the endpoint seen from this node,
# and EVALCTL_PUBLIC_URL, the endpoint other jobs reach (a node address).
# Usage: evalctl_servers_ready KEY PORT HEALTH_PATH TIMEOUT_S [PROXY_PORT PROXY_IMAGE]
evalctl_servers_ready() {
  local key=$1 port=$2 health=$3 timeout=$4 proxy_port=${5:-} proxy_image=${6:-} i a head cfg tag="" n
  local -a addrs urls reached=()
  [ "$key" = model ] || tag="-$key"
  n=${EVALCTL_SRV_COUNT[$key]:-0}
  for ((i = 0; i < n; i++)); do
    head=${EVALCTL_SRV_HEAD[$key.$i]}
    addrs=()
    [ "$head" = "${EVALCTL_NODES[0]}" ] && addrs+=(127.0.0.1)
    addrs+=("$head")
    if [ -n "$health" ]; then
      urls=()
      for a in "${addrs[@]}"; do urls+=("http://$a:$port$health"); done
      if ! evalctl_wait_healthy "${EVALCTL_SRV_PROC[$key.$i]}" "$timeout" "${urls[@]}"; then
        [ "${addrs[0]}" = "$head" ] &&
          evalctl_log "instance $i runs on another node ($head), reached on that node's address: a server listening on 127.0.0.1 only is not (use e.g. --host 0.0.0.0)"
        return 1
      fi
      a=${EVALCTL_HEALTHY_URL#http://}
      a=${a%%:*}
    else
      evalctl_log "no health endpoint: waiting ${timeout} s for instance $i"
      sleep "$timeout"
      # The first address unless only the node's accepts connections.
      a=${addrs[0]}
      if ! evalctl_listening "$a" "$port" && evalctl_listening "$head" "$port"; then a=$head; fi
    fi
    reached+=("$a")
  done
  EVALCTL_BASE_URL="http://${reached[0]}:$port"
  EVALCTL_PUBLIC_URL="http://${EVALCTL_SRV_HEAD[$key.0]}:$port"
  if [ "$n" -gt 1 ]; then
    cfg="$EVALCTL_DIR/haproxy-$EVALCTL_JOB$tag.cfg"
    {
      printf 'global\n  maxconn 8192\ndefaults\n  mode http\n  timeout connect 10s\n  timeout client 100000s\n  timeout server 100000s\n'
      printf 'frontend evalctl\n  bind *:%s\n  default_backend models\nbackend models\n  balance leastconn\n  option http-server-close\n' "$proxy_port"
      [ -n "$health" ] && printf '  option httpchk GET %s\n  http-check expect status 200\n' "$health"
      for i in "${!reached[@]}"; do printf '  server instance%s %s:%s check\n' "$i" "${reached[$i]}" "$port"; done
    } >"$cfg"
    srun --overlap --nodes=1 --ntasks=1 --nodelist="${EVALCTL_NODES[0]}" --container-image="$proxy_image" \
      --container-mounts="$cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" \
      haproxy -f /usr/local/etc/haproxy/haproxy.cfg >"$EVALCTL_LOGS/proxy-$EVALCTL_JOB$tag.log" 2>&1 &
    EVALCTL_SERVER_PIDS+=("$!")
    evalctl_wait_healthy "$!" "$timeout" "http://127.0.0.1:$proxy_port${health:-/}" || return 1
    EVALCTL_BASE_URL="http://127.0.0.1:$proxy_port"
    EVALCTL_PUBLIC_URL="http://${EVALCTL_NODES[0]}:$proxy_port"
  fi
}

# Publishes EVALCTL_PUBLIC_URL as this deployment's endpoint, once it answers
# there: other jobs reach it on its node's address, which a server listening
# on 127.0.0.1 only does not answer.
# Usage: evalctl_publish_endpoint HEALTH_PATH
evalctl_publish_endpoint() {
  local hostport=${EVALCTL_PUBLIC_URL#http://}
  if [ -n "$1" ]; then
    evalctl_http_ok "$EVALCTL_PUBLIC_URL$1" 2>/dev/null
  else
    evalctl_listening "${hostport%%:*}" "${hostport##*:}"
  fi || {
    evalctl_log "the model server answers on $EVALCTL_BASE_URL but not on $EVALCTL_PUBLIC_URL, where other jobs reach it: a shared or auxiliary server must listen on all interfaces (e.g. --host 0.0.0.0)"
    return 1
  }
  printf '%s\n' "$EVALCTL_PUBLIC_URL" >"$EVALCTL_DIR/endpoint.tmp" && mv -f "$EVALCTL_DIR/endpoint.tmp" "$EVALCTL_DIR/endpoint"
  evalctl_log "endpoint published: $EVALCTL_PUBLIC_URL"
}

# Waits for a shared deployment of the stack to publish a healthy endpoint,
# through its resume links; fails at once (status 2) when its chain has
# ended (it failed, was stopped, or served every task), as no endpoint will
# come, and after TIMEOUT_S.
# Usage: evalctl_endpoint_of NODE_ID HEALTH_PATH TIMEOUT_S; prints the base URL.
evalctl_endpoint_of() {
  local file="$EVALCTL_STACK_DIR/$1/endpoint" deadline=$((SECONDS + $3)) url state=""
  while :; do
    url=$(cat "$file" 2>/dev/null)
    if [ -n "$url" ] && evalctl_http_ok "$url${2:-/}" 2>/dev/null; then
      printf '%s' "$url"
      return 0
    fi
    read -r state _ 2>/dev/null <"$EVALCTL_STACK_DIR/$1/status"
    case $state in
      completed | failed | stopped)
        evalctl_log "deployment $1 has ended ($(cat "$EVALCTL_STACK_DIR/$1/status" 2>/dev/null)): no endpoint will come" >&2
        return 2
        ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      evalctl_log "no healthy endpoint from $1 after $3 s" >&2
      return 1
    fi
    sleep 5
  done
}

# Serves until every listed task's chain has ended, or a server exits.
evalctl_serve_until_done() {
  local t all
  while :; do
    all=1
    for t in "$@"; do
      case $(cut -d' ' -f1 "$EVALCTL_STACK_DIR/$t/status" 2>/dev/null) in
        completed | failed | stopped) ;;
        *) all=0 ;;
      esac
    done
    [ "$all" = 1 ] && return 0
    for t in "${EVALCTL_SERVER_PIDS[@]}"; do
      kill -0 "$t" 2>/dev/null || {
        evalctl_log "a model server exited"
        return 1
      }
    done
    sleep 15
  done
}
# ---- end of evalctl job runtime ----
