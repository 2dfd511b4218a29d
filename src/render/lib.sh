# ---- evalctl job runtime (the same in every script evalctl renders) ----
# Status file: one line "<state> <job id> [detail]", state in running,
# completed, failed, interrupted, stopped. Chain file: one line per event,
# "<job id> <event> <epoch> [detail]", event in start, end, submit, stop;
# "<job id> submit <epoch> <next job id>" names a link's successor.
# Signal handlers run these, so they use no command substitution.

evalctl_log() { TZ=UTC0 printf '[evalctl %(%Y-%m-%dT%H:%M:%SZ)T] %s\n' -1 "$*"; }

evalctl_status() {
  printf '%s %s %s\n' "$1" "${SLURM_JOB_ID:-0}" "${2:-}" >"$EVALCTL_DIR/status.tmp.$$" &&
    mv -f "$EVALCTL_DIR/status.tmp.$$" "$EVALCTL_DIR/status"
}

evalctl_chain() { printf '%s %s %s %s\n' "${SLURM_JOB_ID:-0}" "$1" "${EPOCHSECONDS:-$(date +%s)}" "${2:-}" >>"$EVALCTL_DIR/chain"; }

# Loads the variables of one container group (secrets file written by
# `evalctl apply`, mode 0600) with tracing off.
evalctl_env() {
  { set +x; } 2>/dev/null
  if [ -f "$EVALCTL_DIR/secrets/$1.env" ]; then
    # shellcheck disable=SC1090
    . "$EVALCTL_DIR/secrets/$1.env"
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
  awk -v me="${SLURM_JOB_ID:-}" '$2 == "submit" && $4 == me { p = $1 } END { print p }' "$EVALCTL_DIR/chain" 2>/dev/null
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

# Records how this link's evaluation ended, from its exit code RC. A link
# whose job Slurm is already ending (time limit, preemption, node failure:
# the job is no longer RUNNING) was cut short whatever RC says, as is one
# whose client was killed by a signal when Slurm cannot tell: the next link
# resumes it. Otherwise RC 0 completes the chain and any other RC fails it.
evalctl_finish() {
  local rc=$1 own
  own=$(scontrol show job "${SLURM_JOB_ID:-0}" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p' | head -n 1)
  if { [ -n "$own" ] && [ "$own" != RUNNING ]; } || { [ -z "$own" ] && [ "$rc" -gt 128 ]; }; then
    evalctl_status interrupted "${own:+$own }exit $rc"
    evalctl_log "the evaluation ended (exit $rc) while the job was ending (${own:-state unknown}): link cut short"
  elif [ "$rc" -eq 0 ]; then
    evalctl_status completed
    evalctl_chain end completed
  else
    evalctl_status failed "exit $rc"
    evalctl_chain end "failed $rc"
  fi
}

# Queues the next link, to run only if this one ends unsuccessfully, named
# with the link's ownership tag and given the user's comment, verbatim (on
# the command line: no `#SBATCH` line or SBATCH_* variable overrides them).
evalctl_submit_next() {
  local next
  if next=$(sbatch --parsable --job-name="$EVALCTL_JOB_NAME" ${EVALCTL_COMMENT:+"--comment=$EVALCTL_COMMENT"} \
    --dependency="afternotok:$SLURM_JOB_ID" --kill-on-invalid-dep=yes "$EVALCTL_DIR/resume.sbatch"); then
    next=${next%%;*}
    evalctl_chain submit "$next"
    evalctl_log "next link queued: job $next"
  else
    evalctl_log "could not queue the next link"
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

# Starts the instances of a model server in the background.
# Usage: evalctl_start_servers GROUP INSTANCES NODES_PER_INSTANCE TASKS_PER_INSTANCE
# with EVALCTL_SRV_ARGS (srun container options) and EVALCTL_SRV_CMD set.
evalctl_start_servers() {
  local group=$1 instances=$2 npi=$3 tpi=$4 i ip head nodelist
  local -a nodes
  EVALCTL_SERVER_PIDS=()
  EVALCTL_HEADS=()
  for ((i = 0; i < instances; i++)); do
    nodes=("${EVALCTL_NODES[@]:i*npi:npi}")
    head=${nodes[0]}
    nodelist=$(IFS=,; printf '%s' "${nodes[*]}")
    ip=$(getent ahostsv4 "$head" 2>/dev/null | awk 'NR == 1 { print $1 }')
    EVALCTL_HEADS+=("$head")
    (
      evalctl_env "$group"
      export MASTER_IP=${ip:-$head} MASTER_ADDR=${ip:-$head} NODES_PER_INSTANCE=$npi INSTANCE_ID=$i
      exec srun --overlap --nodes="$npi" --ntasks="$tpi" --nodelist="$nodelist" "${EVALCTL_SRV_ARGS[@]}" \
        bash -c 'export PROC_ID=$SLURM_PROCID; '"$EVALCTL_SRV_CMD"
    ) >"$EVALCTL_LOGS/server-${SLURM_JOB_ID:-0}-$i.log" 2>&1 &
    EVALCTL_SERVER_PIDS+=("$!")
    evalctl_log "server instance $i starting on $nodelist (log: $EVALCTL_LOGS/server-${SLURM_JOB_ID:-0}-$i.log)"
  done
}

# Waits until every instance answers on PORT/HEALTH; with several instances,
# starts a load balancer in front of them. The batch shell runs on the
# allocation's first node, the first instance's head, where the client
# (per_task) and the load balancer run too: an instance there is reached on
# the loopback address (a server listening on 127.0.0.1 only is reached),
# else on its node's name, as are instances on other nodes. Sets
# EVALCTL_BASE_URL, the endpoint seen from this node, and EVALCTL_PUBLIC_URL,
# the endpoint other jobs reach (a node address).
# Usage: evalctl_servers_ready PORT HEALTH_PATH TIMEOUT_S [PROXY_PORT PROXY_IMAGE]
evalctl_servers_ready() {
  local port=$1 health=$2 timeout=$3 proxy_port=${4:-} proxy_image=${5:-} i a head cfg
  local -a addrs urls reached=()
  for i in "${!EVALCTL_HEADS[@]}"; do
    head=${EVALCTL_HEADS[$i]}
    addrs=()
    [ "$head" = "${EVALCTL_NODES[0]}" ] && addrs+=(127.0.0.1)
    addrs+=("$head")
    if [ -n "$health" ]; then
      urls=()
      for a in "${addrs[@]}"; do urls+=("http://$a:$port$health"); done
      if ! evalctl_wait_healthy "${EVALCTL_SERVER_PIDS[$i]}" "$timeout" "${urls[@]}"; then
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
  EVALCTL_PUBLIC_URL="http://${EVALCTL_HEADS[0]}:$port"
  if [ "${#EVALCTL_HEADS[@]}" -gt 1 ]; then
    cfg="$EVALCTL_DIR/haproxy-${SLURM_JOB_ID:-0}.cfg"
    {
      printf 'global\n  maxconn 8192\ndefaults\n  mode http\n  timeout connect 10s\n  timeout client 100000s\n  timeout server 100000s\n'
      printf 'frontend evalctl\n  bind *:%s\n  default_backend models\nbackend models\n  balance leastconn\n  option http-server-close\n' "$proxy_port"
      [ -n "$health" ] && printf '  option httpchk GET %s\n  http-check expect status 200\n' "$health"
      for i in "${!reached[@]}"; do printf '  server instance%s %s:%s check\n' "$i" "${reached[$i]}" "$port"; done
    } >"$cfg"
    srun --overlap --nodes=1 --ntasks=1 --nodelist="${EVALCTL_HEADS[0]}" --container-image="$proxy_image" \
      --container-mounts="$cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" \
      haproxy -f /usr/local/etc/haproxy/haproxy.cfg >"$EVALCTL_LOGS/proxy-${SLURM_JOB_ID:-0}.log" 2>&1 &
    EVALCTL_SERVER_PIDS+=("$!")
    evalctl_wait_healthy "$!" "$timeout" "http://127.0.0.1:$proxy_port${health:-/}" || return 1
    EVALCTL_BASE_URL="http://127.0.0.1:$proxy_port"
    EVALCTL_PUBLIC_URL="http://${EVALCTL_HEADS[0]}:$proxy_port"
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

# Waits for a deployment job of the stack to publish a healthy endpoint.
# Usage: evalctl_endpoint_of NODE_ID HEALTH_PATH TIMEOUT_S; prints the base URL.
evalctl_endpoint_of() {
  local file="$EVALCTL_STACK_DIR/$1/endpoint" deadline=$((SECONDS + $3)) url
  while :; do
    url=$(cat "$file" 2>/dev/null)
    if [ -n "$url" ] && evalctl_http_ok "$url${2:-/}" 2>/dev/null; then
      printf '%s' "$url"
      return 0
    fi
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
