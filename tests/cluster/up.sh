#!/usr/bin/env bash
# tests/cluster/up.sh - bring up evalctl's end-to-end test cluster: a real
# Slurm 22.05 (Debian 12 packages) with accounting, three slurmd "nodes" on this
# host and an OpenSSH server on 127.0.0.1, without systemd. evalctl's
# end-to-end tests submit through that sshd exactly as they would to a real
# cluster's login node.
#
#   bash tests/cluster/up.sh     # as root; from nothing ~20 s (mostly apt), when up < 1 s
#   bash tests/cluster/smoke.sh  # optional quick check (~30 s)
#   bash tests/cluster/down.sh   # stops only what up.sh started; keeps all state
#
# Idempotent: re-running it only starts what is not running (the PIDs it
# started are kept in $STATE/pids) and only restarts a daemon whose config it
# changed. Connection info is printed at the end and written to
# $STATE/cluster.env (shell) and $STATE/cluster.json.
#
# Environment knobs (all optional):
#   EVALCTL_CLUSTER_STATE     state dir (default /tmp/evalctl-cluster): pids, ssh keys,
#                             sshd config, connection files, shared dir
#   EVALCTL_CLUSTER_SSH_PORT  sshd port on 127.0.0.1 (default 2222)
#   EVALCTL_CLUSTER_USER      test user reachable over ssh (default slurmuser)
#   EVALCTL_CLUSTER_NO_APT=1  never call apt-get (fail if a package is missing)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${EVALCTL_CLUSTER_STATE:-/tmp/evalctl-cluster}
SSH_PORT=${EVALCTL_CLUSTER_SSH_PORT:-2222}
TEST_USER=${EVALCTL_CLUSTER_USER:-slurmuser}
SSH_ALIAS=evalctl-cluster
CLUSTER=evalctl
ACCOUNTS=(default research)
LIMITED_ACCOUNT=limited
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurmdbpass
HOST=$(hostname -s)
PIDDIR=$STATE/pids
SHARED=$STATE/shared
CPU_NODES=(n1 n2)
GPU_NODES=(g1)
ALL_NODES=("${CPU_NODES[@]}" "${GPU_NODES[@]}")
declare -A NODE_PORT=([n1]=17001 [n2]=17002 [g1]=17003)
CTLD_PORT=6817
DBD_PORT=6819
SPANK_SRC=$HERE/spank_container_stub.c
SPANK_SO=/usr/local/lib/evalctl-cluster/spank_container_stub.so

T_START=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T_START) / 1000000 )); printf '[up %3d.%03ds] %s\n' $((ms/1000)) $((ms%1000)) "$*"; }
die() { echo "up.sh: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
[[ "$SSH_PORT" =~ ^[0-9]+$ ]] || die "EVALCTL_CLUSTER_SSH_PORT must be a number"

install -d -m 755 "$STATE" "$PIDDIR" "$STATE/log" "$STATE/ssh" "$STATE/sshd"
install -d -m 1777 "$SHARED"
chmod 1777 "$SHARED"

# ---------------------------------------------------------------- packages
PKGS=(slurm-wlm slurmctld slurmd slurm-client slurmdbd slurm-wlm-basic-plugins munge
      mariadb-server openssh-server openssh-client libslurm-dev gcc libc6-dev)
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null || true)
missing=()
for p in "${PKGS[@]}"; do grep -qx "$p install ok installed" <<<"$installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${EVALCTL_CLUSTER_NO_APT:-0}" = 1 ] && die "missing packages: ${missing[*]}"
  log "installing: ${missing[*]}"
  # No package may start a daemon (sshd on :22, a stock munged/mariadbd/slurmd):
  # a policy-rc.d that denies everything, ours only for the duration of the
  # install if the machine has none (or one that does not deny).
  POLICY=/usr/sbin/policy-rc.d
  policy_backup=""
  restore_policy() {
    if [ -n "$policy_backup" ]; then mv -f "$policy_backup" "$POLICY"; else rm -f "$POLICY"; fi
  }
  if [ -x "$POLICY" ] && grep -qx 'exit 101' "$POLICY"; then
    restore_policy() { :; }   # the machine's own, already denies: leave it
  else
    if [ -e "$POLICY" ]; then policy_backup=$(mktemp /usr/sbin/policy-rc.d.evalctl.XXXXXX); cp -p "$POLICY" "$policy_backup"; fi
    printf '#!/bin/sh\n# temporary, from evalctl tests/cluster/up.sh\nexit 101\n' > "$POLICY"
    chmod 755 "$POLICY"
  fi
  trap restore_policy EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$STATE/log/apt.log" 2>&1 || { tail -20 "$STATE/log/apt.log"; die "apt-get update failed"; }
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1 \
    || { tail -20 "$STATE/log/apt.log"; die "apt-get install failed (log: $STATE/log/apt.log)"; }
  restore_policy
  trap - EXIT
  log "packages installed"
fi

# ---------------------------------------------------------------- helpers
# running PID: process exists and is not a zombie (PID 1 here reaps orphans late)
running() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1); [ -n "$st" ] && [ "$st" != Z ]; }
# alive NAME EXE: true if the PID recorded by up.sh is running that binary
alive() {
  local f=$PIDDIR/$1.pid p
  [ -s "$f" ] || return 1
  p=$(cat "$f")
  running "$p" || return 1
  [[ "$(readlink "/proc/$p/exe" 2>/dev/null)" == "$2"* ]]
}
# listening PORT: a TCP socket in LISTEN state on that port (no ss/netstat needed)
listening() {
  local hex; hex=$(printf '%04X' "$1")
  awk -v p=":$hex" '$4=="0A" && substr($2, length($2)-4)==p {f=1} END{exit !f}' /proc/net/tcp /proc/net/tcp6
}
# port_owner PORT: "pid N (exe)" of the process listening on PORT (for error messages)
port_owner() {
  local hex inode fd
  hex=$(printf '%04X' "$1")
  inode=$(awk -v p=":$hex" '$4=="0A" && substr($2, length($2)-4)==p {print $10; exit}' /proc/net/tcp /proc/net/tcp6)
  [ -n "$inode" ] || { echo "unknown process"; return; }
  for fd in /proc/[0-9]*/fd/*; do
    if [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ]; then
      fd=${fd#/proc/}; fd=${fd%%/*}
      echo "pid $fd ($(readlink "/proc/$fd/exe" 2>/dev/null || echo '?'))"; return
    fi
  done
  echo "unknown process"
}
port_taken() { # PORT WHAT
  die "port $1 ($2) is taken by $(port_owner "$1"), which up.sh did not start. Another Slurm test cluster (e.g. one under /tmp/slurm-dev) shares /etc/slurm and these ports: stop it first."
}
# wait_for SECONDS CMD...: poll CMD every 0.1 s
wait_for() {
  local n=$(( $1 * 10 )) i; shift
  for ((i=0; i<n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
# record NAME PIDFILE: copy the daemon's own pidfile into $PIDDIR
record() {
  wait_for 15 test -s "$2" || die "$1 did not write $2"
  cat "$2" > "$PIDDIR/$1.pid"
}
# write_if_changed FILE MODE OWNER < content ; returns 0 if the file changed
write_if_changed() {
  local f=$1 mode=$2 owner=$3 tmp; tmp=$(mktemp)
  cat > "$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$f"; rm -f "$tmp"; return 0
}
join() { local IFS=,; echo "$*"; }
stop_ours() { # NAME EXE
  alive "$1" "$2" || { rm -f "$PIDDIR/$1.pid"; return 0; }
  local p i; p=$(cat "$PIDDIR/$1.pid"); kill "$p" 2>/dev/null || true
  for ((i=0; i<200; i++)); do running "$p" || break; sleep 0.1; done
  if running "$p"; then kill -9 "$p" 2>/dev/null || true; fi
  rm -f "$PIDDIR/$1.pid"
}

# ---------------------------------------------------------------- munge
if alive munged /usr/sbin/munged; then :
elif munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then log "munged already running (not started by up.sh; used as is)"
else
  if [ ! -s /etc/munge/munge.key ]; then
    install -d -o munge -g munge -m 700 /etc/munge
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 755 /run/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --force
  record munged /run/munge/munged.pid
  wait_for 10 bash -c 'munge -n | unmunge' || die "munge does not work"
  log "munged started (pid $(cat "$PIDDIR/munged.pid"))"
fi

# ---------------------------------------------------------------- mariadb
SOCK=/run/mysqld/mysqld.sock
if alive mariadbd /usr/sbin/mariadbd; then :
elif mariadb-admin --socket=$SOCK ping >/dev/null 2>&1; then log "mariadbd already running (not started by up.sh; used as is)"
else
  install -d -o mysql -g mysql -m 755 /run/mysqld /var/log/mysql
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  rm -f /run/mysqld/mysqld.pid
  # unix socket only (--skip-networking): slurmdbd talks to it via StorageHost=localhost
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking --socket=$SOCK \
      --pid-file=/run/mysqld/mysqld.pid --log-error=/var/log/mysql/error.log \
      --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
      </dev/null >/dev/null 2>&1 &
  echo $! > "$PIDDIR/mariadbd.pid"
  wait_for 60 mariadb-admin --socket=$SOCK ping || die "mariadbd did not come up (see /var/log/mysql/error.log)"
  log "mariadbd started (pid $(cat "$PIDDIR/mariadbd.pid"))"
fi
if ! mariadb --socket=$SOCK -N -e "SELECT 1 FROM mysql.user WHERE user='$DB_USER' AND host='localhost'" 2>/dev/null | grep -q 1; then
  mariadb --socket=$SOCK -e "CREATE DATABASE IF NOT EXISTS $DB_NAME;
    CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost'; FLUSH PRIVILEGES;"
  log "database $DB_NAME and user $DB_USER created"
fi

# ---------------------------------------------------------------- slurm configs
install -d -o slurm -g slurm -m 755 /run/slurm /var/log/slurm /var/lib/slurm /var/lib/slurm/slurmctld
install -d -m 755 /var/lib/slurm/slurmd /var/lib/slurm/fakegpu /etc/slurm/plugstack.conf.d
for n in "${ALL_NODES[@]}"; do install -d -m 755 "/var/lib/slurm/slurmd/$n"; done
# fake GPUs: char devices with /dev/null's major/minor (slurmd rejects file-less
# GPUs and regular files in gres.conf)
for i in 0 1; do
  f=/var/lib/slurm/fakegpu/nvidia$i
  [ -c "$f" ] || { rm -f "$f"; mknod -m 666 "$f" c 1 3; }
done

DBD_CHANGED=0
if write_if_changed /etc/slurm/slurmdbd.conf 600 slurm:slurm <<EOF; then DBD_CHANGED=1; fi
# generated by evalctl tests/cluster/up.sh
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$DB_PASS
EOF

node_lines() {
  local n
  for n in "${CPU_NODES[@]}"; do
    echo "NodeName=$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${NODE_PORT[$n]} CPUs=2 RealMemory=4000 State=UNKNOWN"
  done
  for n in "${GPU_NODES[@]}"; do
    echo "NodeName=$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=${NODE_PORT[$n]} CPUs=2 RealMemory=4000 Gres=gpu:2 State=UNKNOWN"
  done
}

CONF_CHANGED=0
if write_if_changed /etc/slurm/slurm.conf 644 root:root <<EOF; then CONF_CHANGED=1; fi
# generated by evalctl tests/cluster/up.sh - evalctl's end-to-end test cluster:
# one host, several slurmd (Debian's build supports multiple slurmd per host)
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
# cred_expire also sets how long a requeued (preempted, NODE_FAIL, scontrol
# requeue) job waits before it may start again: 120 s by default, 5 s minimum
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
SlurmctldPort=$CTLD_PORT
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd/%n
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=1
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
MinJobAge=30
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment,job_script
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
GresTypes=gpu
$(node_lines)
PartitionName=cpu Nodes=$(join "${CPU_NODES[@]}") Default=YES MaxTime=INFINITE PriorityTier=1 State=UP
PartitionName=gpu Nodes=$(join "${GPU_NODES[@]}") MaxTime=INFINITE PriorityTier=1 State=UP
PartitionName=urgent Nodes=$(join "${CPU_NODES[@]}") MaxTime=INFINITE PriorityTier=10 State=UP
EOF

if write_if_changed /etc/slurm/gres.conf 644 root:root <<EOF; then CONF_CHANGED=1; fi
# generated by evalctl tests/cluster/up.sh - fake GPUs (char devices 1,3 = /dev/null)
AutoDetect=off
$(for n in "${GPU_NODES[@]}"; do echo "NodeName=$n Name=gpu File=/var/lib/slurm/fakegpu/nvidia[0-1]"; done)
EOF

# Pyxis stand-in (SPANK plugin; see README.md). A rebuilt .so is picked up by
# every new srun/sbatch/salloc and slurmstepd (i.e. new steps) without a
# restart; only a changed plugstack.conf.d file restarts slurmctld/slurmd.
[ -f "$SPANK_SRC" ] || die "missing $SPANK_SRC"
if [ ! -f "$SPANK_SO" ] || [ "$SPANK_SRC" -nt "$SPANK_SO" ]; then
  install -d -m 755 "$(dirname "$SPANK_SO")"
  gcc -shared -fPIC -O2 -Wall -Werror -I/usr/include/slurm -o "$SPANK_SO.tmp" "$SPANK_SRC" \
    || die "building $SPANK_SRC failed"
  mv -f "$SPANK_SO.tmp" "$SPANK_SO"   # new inode: running processes keep the old one
  log "SPANK Pyxis stand-in built: $SPANK_SO (used by new steps)"
fi
# "required" (as pyxis usually is): with "optional", Slurm ignores a failing
# hook, so a step with a bad --container-mounts would run anyway. Debian's
# /etc/slurm/plugstack.conf includes plugstack.conf.d/*.conf.
grep -qs '^include /etc/slurm/plugstack.conf.d/\*.conf' /etc/slurm/plugstack.conf \
  || { echo 'include /etc/slurm/plugstack.conf.d/*.conf' >> /etc/slurm/plugstack.conf; CONF_CHANGED=1; }
if write_if_changed /etc/slurm/plugstack.conf.d/container-stub.conf 644 root:root <<EOF; then CONF_CHANGED=1; fi
# generated by evalctl tests/cluster/up.sh - Pyxis stand-in (--container-* options)
required $SPANK_SO
EOF

# ---------------------------------------------------------------- slurmdbd
if [ $DBD_CHANGED = 1 ] && alive slurmdbd /usr/sbin/slurmdbd; then
  log "slurmdbd.conf changed: restarting slurmdbd"; stop_ours slurmdbd /usr/sbin/slurmdbd
fi
if alive slurmdbd /usr/sbin/slurmdbd; then :
elif listening $DBD_PORT; then port_taken $DBD_PORT slurmdbd
else
  rm -f /run/slurm/slurmdbd.pid
  /usr/sbin/slurmdbd
  record slurmdbd /run/slurm/slurmdbd.pid
  wait_for 30 listening $DBD_PORT || die "slurmdbd did not listen on $DBD_PORT (see /var/log/slurm/slurmdbd.log)"
  log "slurmdbd started (pid $(cat "$PIDDIR/slurmdbd.pid"))"
fi

# ---------------------------------------------------------------- test user
if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd -m -s /bin/bash "$TEST_USER"
  log "user $TEST_USER created"
fi
# '*' = no password but not "locked" ('!'), which sshd with UsePAM=no refuses even for keys
[ "$(getent shadow "$TEST_USER" | cut -d: -f2)" = "*" ] || usermod -p '*' "$TEST_USER"

# ---------------------------------------------------------------- accounting objects
# Fast path: one query (each sacctmgr call costs ~0.2 s) shows that cluster,
# accounts, associations and the admin level are all in place.
users=""
for ((i=0; i<300; i++)); do
  users=$(sacctmgr -n -P show user withassoc format=user,adminlevel,cluster,account 2>/dev/null) && break
  sleep 0.1
done
[ $i -lt 300 ] || die "sacctmgr cannot reach slurmdbd (see /var/log/slurm/slurmdbd.log)"
acct_ok=1
for u in root "$TEST_USER"; do
  for a in "${ACCOUNTS[@]}"; do grep -qE "^$u\|[^|]*\|$CLUSTER\|$a\$" <<<"$users" || acct_ok=0; done
done
grep -q "^$TEST_USER|Administrator|" <<<"$users" || acct_ok=0
if [ $acct_ok = 0 ]; then
  assoc=$(sacctmgr -n -P list assoc format=cluster,account,user)
  if ! grep -q "^$CLUSTER|" <<<"$assoc"; then
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null; log "cluster $CLUSTER added"
  fi
  new_acc=()
  for a in "${ACCOUNTS[@]}"; do grep -qx "$CLUSTER|$a|" <<<"$assoc" || new_acc+=("$a"); done
  if [ ${#new_acc[@]} -gt 0 ]; then
    sacctmgr -i -Q add account "$(join "${new_acc[@]}")" Cluster="$CLUSTER" Description=evalctl-tests Organization=evalctl >/dev/null
    log "accounts added: ${new_acc[*]}"
  fi
  for u in root "$TEST_USER"; do
    missing_acc=()
    for a in "${ACCOUNTS[@]}"; do grep -qx "$CLUSTER|$a|$u" <<<"$assoc" || missing_acc+=("$a"); done
    if [ ${#missing_acc[@]} -gt 0 ]; then
      sacctmgr -i -Q add user "$u" Account="$(join "${missing_acc[@]}")" DefaultAccount=default Cluster="$CLUSTER" >/dev/null
      log "associations added: $u -> ${missing_acc[*]}"
    fi
  done
  # AdminLevel=Admin: lets tests change node state over ssh (scontrol update nodename=...)
  if [ "$(sacctmgr -n -P show user "$TEST_USER" format=adminlevel 2>/dev/null)" != Administrator ]; then
    sacctmgr -i -Q modify user "$TEST_USER" set adminlevel=Admin >/dev/null
    log "$TEST_USER: AdminLevel=Admin"
  fi
fi

# ---------------------------------------------------------------- slurmctld + slurmd
if [ $CONF_CHANGED = 1 ] && { alive slurmctld /usr/sbin/slurmctld || ls "$PIDDIR"/slurmd-*.pid >/dev/null 2>&1; }; then
  log "slurm config changed: restarting slurmctld/slurmd started by up.sh"
  for n in "${ALL_NODES[@]}"; do stop_ours "slurmd-$n" /usr/sbin/slurmd; done
  stop_ours slurmctld /usr/sbin/slurmctld
fi
if alive slurmctld /usr/sbin/slurmctld; then :
elif listening $CTLD_PORT; then port_taken $CTLD_PORT slurmctld
else
  rm -f /run/slurm/slurmctld.pid
  /usr/sbin/slurmctld
  record slurmctld /run/slurm/slurmctld.pid
  wait_for 30 bash -c 'scontrol ping | grep -q UP' || die "slurmctld not answering (see /var/log/slurm/slurmctld.log)"
  log "slurmctld started (pid $(cat "$PIDDIR/slurmctld.pid"))"
fi
STARTED_SLURMD=0
for n in "${ALL_NODES[@]}"; do
  if alive "slurmd-$n" /usr/sbin/slurmd; then continue; fi
  if listening "${NODE_PORT[$n]}"; then port_taken "${NODE_PORT[$n]}" "slurmd $n"; fi
  rm -f "/run/slurm/slurmd-$n.pid"
  /usr/sbin/slurmd -N "$n"
  STARTED_SLURMD=1
  record "slurmd-$n" "/run/slurm/slurmd-$n.pid"
  log "slurmd $n started (pid $(cat "$PIDDIR/slurmd-$n.pid"), port ${NODE_PORT[$n]})"
done

# ---------------------------------------------------------------- limits
# The limits name the GPU TRES, which slurmdbd knows once slurmctld (with
# AccountingStorageTRES=gres/gpu) has registered: on a fresh machine, only now.
for ((i=0; i<300; i++)); do
  sacctmgr -n -P show tres format=type,name 2>/dev/null | grep -qx 'gres|gpu' && break
  sleep 0.1
done
[ $i -lt 300 ] || die "slurmdbd does not know the TRES gres/gpu (see /var/log/slurm/slurmctld.log)"
# A shared cluster's limits, for the scheduler-limit tests: the test user's
# association under account `limited` (MaxSubmitJobs=50, MaxJobs=20, at most
# 4 GPUs, 2 h a job) and a QOS `small` it may use (30 queued / 10 running jobs
# per user, 2 GPUs, 1 h). The other accounts stay unlimited.
LIMITED_ASSOC="limited|$TEST_USER|50|20|gres/gpu=4|02:00:00|"
SMALL_QOS="small|30|10|01:00:00|gres/gpu=2"
limits=$(sacctmgr -n -P list assoc account=$LIMITED_ACCOUNT user="$TEST_USER" \
           format=account,user,maxsubmitjobs,maxjobs,grptres,maxwall,qos 2>/dev/null || true)
qos=$(sacctmgr -n -P show qos small format=name,maxsubmitjobsperuser,maxjobsperuser,maxwall,maxtresperuser 2>/dev/null || true)
if [ "$qos" != "$SMALL_QOS" ]; then
  grep -q '^small|' <<<"$qos" || sacctmgr -i -Q add qos small >/dev/null
  sacctmgr -i -Q modify qos small set MaxSubmitJobsPerUser=30 MaxJobsPerUser=10 MaxWall=01:00:00 \
    MaxTRESPerUser=gres/gpu=2 >/dev/null
  log "QOS small: MaxSubmitJobsPerUser=30 MaxJobsPerUser=10 MaxWall=1h MaxTRESPerUser=gres/gpu=2"
fi
if ! grep -qx "${LIMITED_ASSOC}normal,small" <<<"$limits" && ! grep -qx "${LIMITED_ASSOC}small,normal" <<<"$limits"; then
  grep -q "^$LIMITED_ACCOUNT|$TEST_USER|" <<<"$limits" || {
    grep -q "^$LIMITED_ACCOUNT|" <<<"$(sacctmgr -n -P list account format=account)" \
      || sacctmgr -i -Q add account $LIMITED_ACCOUNT Cluster="$CLUSTER" Description=evalctl-limits Organization=evalctl >/dev/null
    sacctmgr -i -Q add user "$TEST_USER" Account=$LIMITED_ACCOUNT Cluster="$CLUSTER" >/dev/null
  }
  sacctmgr -i -Q modify user "$TEST_USER" where account=$LIMITED_ACCOUNT cluster="$CLUSTER" set \
    MaxSubmitJobs=50 MaxJobs=20 GrpTRES=gres/gpu=4 MaxWall=02:00:00 QOS=normal,small >/dev/null
  log "association $TEST_USER@$LIMITED_ACCOUNT: MaxSubmitJobs=50 MaxJobs=20 GrpTRES=gres/gpu=4 MaxWall=2h QOS=normal,small"
fi

# ---------------------------------------------------------------- sshd
install -d -m 755 /run/sshd   # privilege separation dir
[ -s "$STATE/sshd/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C evalctl-cluster-host -f "$STATE/sshd/ssh_host_ed25519_key"
[ -s "$STATE/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "evalctl-cluster-$TEST_USER" -f "$STATE/ssh/id_ed25519"
SSHD_CHANGED=0
if write_if_changed "$STATE/sshd/sshd_config" 644 root:root <<EOF; then SSHD_CHANGED=1; fi
# generated by evalctl tests/cluster/up.sh
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $STATE/sshd/ssh_host_ed25519_key
PidFile $STATE/sshd/sshd.pid
PermitRootLogin no
AllowUsers $TEST_USER
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
MaxSessions 64
MaxStartups 64:30:128
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
home=$(getent passwd "$TEST_USER" | cut -d: -f6)
install -d -m 700 -o "$TEST_USER" -g "$TEST_USER" "$home/.ssh"
write_if_changed "$home/.ssh/authorized_keys" 600 "$TEST_USER:$TEST_USER" < "$STATE/ssh/id_ed25519.pub" || true
hostkey=$(cut -d' ' -f1,2 "$STATE/sshd/ssh_host_ed25519_key.pub")
write_if_changed "$STATE/ssh/known_hosts" 644 root:root <<EOF || true
[127.0.0.1]:$SSH_PORT $hostkey
[localhost]:$SSH_PORT $hostkey
EOF
write_if_changed "$STATE/ssh/config" 644 root:root <<EOF || true
# evalctl test cluster; usage: ssh -F $STATE/ssh/config $SSH_ALIAS sinfo
Host $SSH_ALIAS
  HostName 127.0.0.1
  Port $SSH_PORT
  User $TEST_USER
  IdentityFile $STATE/ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/ssh/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
EOF
if [ $SSHD_CHANGED = 1 ] && alive sshd /usr/sbin/sshd; then
  log "sshd_config changed: restarting sshd"; stop_ours sshd /usr/sbin/sshd
fi
if alive sshd /usr/sbin/sshd; then :
elif listening "$SSH_PORT"; then port_taken "$SSH_PORT" sshd
else
  /usr/sbin/sshd -t -f "$STATE/sshd/sshd_config" || die "sshd config test failed"
  rm -f "$STATE/sshd/sshd.pid"
  /usr/sbin/sshd -f "$STATE/sshd/sshd_config" -E "$STATE/log/sshd.log"
  record sshd "$STATE/sshd/sshd.pid"
  wait_for 10 listening "$SSH_PORT" || die "sshd not listening"
  log "sshd started (pid $(cat "$PIDDIR/sshd.pid"), 127.0.0.1:$SSH_PORT)"
fi

# ---------------------------------------------------------------- wait for nodes
OK_STATES='idle|mix|alloc|comp|plnd|resv'
nodes_ok() {
  local out; out=$(sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
  [ "$(sort -u <<<"$out" | wc -l)" -ge "${#ALL_NODES[@]}" ] || return 1
  ! grep -vqE " ($OK_STATES)\$" <<<"$out"
}
if ! nodes_ok; then
  # freshly started slurmd need a moment to register
  if [ "$STARTED_SLURMD" = 1 ]; then wait_for 10 nodes_ok || true; fi
  if ! nodes_ok; then
    # responding nodes left DOWN/DRAIN/FAIL (e.g. by a node-failure test): resume them
    bad=$(sinfo -h -N -o '%N %t' | grep -vE " ($OK_STATES)\$" | grep -v '\*$' | awk '{print $1}' | sort -u | paste -sd, -)
    if [ -n "$bad" ]; then
      log "resuming nodes: $bad ($(sinfo -h -N -n "$bad" -o '%t:%E' | sort -u | paste -sd' ' -))"
      scontrol update nodename="$bad" state=resume || true
    fi
    wait_for 30 nodes_ok || { sinfo -N -l; die "nodes not usable (see /var/log/slurm/slurmd-*.log)"; }
  fi
fi

# ---------------------------------------------------------------- node names, stand-ins
# Every node is this machine; give each its own loopback address under its
# name (as real compute nodes have resolvable names), so model servers of
# different nodes can use one port without colliding.
hosts_changed=0
for i in "${!ALL_NODES[@]}"; do
  n=${ALL_NODES[$i]}
  want="127.0.1.$((i + 1)) $n"
  if ! grep -qE "^127\.0\.1\.$((i + 1))[[:space:]]+$n\$" /etc/hosts; then
    # /etc/hosts may be a bind mount: rewrite it in place, never replace it.
    rest=$(grep -vE "[[:space:]]$n\$" /etc/hosts || true)
    printf '%s\n%s\n' "$rest" "$want" >/etc/hosts
    hosts_changed=1
  fi
done
[ "$hosts_changed" = 1 ] && log "node names in /etc/hosts: ${ALL_NODES[*]}"
# Stand-ins for the model server and the harness, on every node's PATH.
for f in evalctl-model-server nemo-evaluator; do
  if ! cmp -s "$HERE/fixtures/$f" "/usr/local/bin/$f"; then
    install -m 0755 "$HERE/fixtures/$f" "/usr/local/bin/$f"
    log "installed /usr/local/bin/$f"
  fi
done

# ---------------------------------------------------------------- connection info
write_if_changed "$STATE/cluster.env" 644 root:root <<EOF || true
# evalctl test cluster connection info (generated by tests/cluster/up.sh)
EVALCTL_CLUSTER_HOST=127.0.0.1
EVALCTL_CLUSTER_PORT=$SSH_PORT
EVALCTL_CLUSTER_USER=$TEST_USER
EVALCTL_CLUSTER_IDENTITY=$STATE/ssh/id_ed25519
EVALCTL_CLUSTER_KNOWN_HOSTS=$STATE/ssh/known_hosts
EVALCTL_CLUSTER_SSH_CONFIG=$STATE/ssh/config
EVALCTL_CLUSTER_SSH_ALIAS=$SSH_ALIAS
EVALCTL_CLUSTER_SHARED=$SHARED
EVALCTL_CLUSTER_NAME=$CLUSTER
EVALCTL_CLUSTER_PARTITIONS=cpu,gpu,urgent
EVALCTL_CLUSTER_DEFAULT_PARTITION=cpu
EVALCTL_CLUSTER_ACCOUNTS=$(join "${ACCOUNTS[@]}")
EVALCTL_CLUSTER_LIMITED_ACCOUNT=$LIMITED_ACCOUNT
EOF
write_if_changed "$STATE/cluster.json" 644 root:root <<EOF || true
{
  "host": "127.0.0.1",
  "port": $SSH_PORT,
  "user": "$TEST_USER",
  "identity_file": "$STATE/ssh/id_ed25519",
  "known_hosts_file": "$STATE/ssh/known_hosts",
  "ssh_config": "$STATE/ssh/config",
  "ssh_alias": "$SSH_ALIAS",
  "shared_dir": "$SHARED",
  "cluster_name": "$CLUSTER",
  "partitions": ["cpu", "gpu", "urgent"],
  "default_partition": "cpu",
  "accounts": ["default", "research"],
  "limited_account": "$LIMITED_ACCOUNT"
}
EOF

log "cluster is up"
sinfo -o '%10P %.5a %.10l %.6D %.8t %N %G'
cat <<EOF

evalctl test cluster '$CLUSTER' (Slurm $(sinfo -V | awk '{print $2}')) on host $HOST
  partitions : cpu (default; n1,n2), gpu (g1, gres gpu:2 - fake devices), urgent (n1,n2, preempts cpu jobs, REQUEUE)
  accounts   : $(join "${ACCOUNTS[@]}")   (users: root, $TEST_USER [AdminLevel=Admin]; AccountingStorageEnforce=associations,limits,qos)
  limits     : account $LIMITED_ACCOUNT ($TEST_USER: MaxSubmitJobs=50 MaxJobs=20 GrpTRES=gres/gpu=4 MaxWall=2h), QOS small (per user: 30 queued, 10 running)
  ssh        : host 127.0.0.1  port $SSH_PORT  user $TEST_USER
  identity   : $STATE/ssh/id_ed25519
  known_hosts: $STATE/ssh/known_hosts
  ssh config : $STATE/ssh/config  (host alias $SSH_ALIAS: ssh -F $STATE/ssh/config $SSH_ALIAS sinfo)
  shared dir : $SHARED  (mode 1777, same path on every "node")
  info files : $STATE/cluster.env  $STATE/cluster.json
  stop with  : bash $HERE/down.sh
EOF
