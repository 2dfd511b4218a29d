#!/usr/bin/env bash
# tests/cluster/down.sh - stop the daemons of evalctl's test cluster that
# tests/cluster/up.sh started, and only those: each PID comes from
# $STATE/pids/NAME.pid and is signalled only if it still runs the expected
# binary. All state (database, Slurm state and job ids, keys, users, configs)
# is kept, so the next up.sh takes ~2 s.
#
# Knob: EVALCTL_CLUSTER_STATE (default /tmp/evalctl-cluster), as for up.sh.
set -uo pipefail
STATE=${EVALCTL_CLUSTER_STATE:-/tmp/evalctl-cluster}
PIDDIR=$STATE/pids
[ "$(id -u)" = 0 ] || { echo "down.sh: must run as root" >&2; exit 1; }
[ -d "$PIDDIR" ] || { echo "down.sh: nothing to stop ($PIDDIR missing)"; exit 0; }

# running PID: process exists and is not a zombie (PID 1 here reaps orphans
# late, ~2 s; waiting for /proc/PID to vanish made down.sh take 20 s)
running() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1); [ -n "$st" ] && [ "$st" != Z ]; }
stop() { # NAME EXE
  local f=$PIDDIR/$1.pid p i
  [ -s "$f" ] || return 0
  p=$(cat "$f")
  if running "$p" && [[ "$(readlink "/proc/$p/exe" 2>/dev/null)" == "$2"* ]]; then
    kill -TERM "$p" 2>/dev/null
    for ((i=0; i<200; i++)); do running "$p" || break; sleep 0.1; done
    if running "$p"; then echo "down.sh: $1 (pid $p) ignored SIGTERM for 20 s, sending SIGKILL"; kill -KILL "$p" 2>/dev/null; fi
    echo "stopped $1 (pid $p)"
  else
    echo "skipped $1 (pid $p not running $2)"
  fi
  rm -f "$f"
}

stop sshd /usr/sbin/sshd
for f in "$PIDDIR"/slurmd-*.pid; do
  [ -e "$f" ] || continue
  n=$(basename "$f" .pid); stop "$n" /usr/sbin/slurmd
done
stop slurmctld /usr/sbin/slurmctld
stop slurmdbd /usr/sbin/slurmdbd
stop mariadbd /usr/sbin/mariadbd
stop munged /usr/sbin/munged
exit 0
