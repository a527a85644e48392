#!/usr/bin/env bash
# A single-node SLURM on this machine, for trying and testing the SLURM path (hydra/launcher=slurm).
#
#   scripts/slurm-local.sh up       install what is missing (Debian packages), start munge, MariaDB,
#                                   slurmdbd, slurmctld, slurmd; wait until a job can run
#   scripts/slurm-local.sh status   which daemons run, the node's state
#   scripts/slurm-local.sh down     cancel the jobs, stop the daemons this script started (by pid file)
#
# Everything (config, keys, state, database, logs, pid files) lives in one directory outside the
# repository: $REGBENCH_SLURM_DIR (default /tmp/regbench-slurm). The cluster's slurm.conf is linked from
# /etc/slurm/slurm.conf (only where that file does not exist), so sbatch, squeue and sacct find it as on a
# real cluster; `down` removes that link again. Needs root (slurmd runs jobs as their user).
#
# Accounting: slurmdbd on a local MariaDB. submitit reads job states with `sacct`; without accounting sacct
# fails, submitit warns on every poll and a cancelled job's end is never learnt (the sweep waits forever).
set -euo pipefail

DIR=${REGBENCH_SLURM_DIR:-/tmp/regbench-slurm}
CLUSTER=regbench
PARTITION=debug
DB_PORT=${REGBENCH_SLURM_DB_PORT:-3307}   # MariaDB on 127.0.0.1 only; not 3306, to stay clear of a system one
NODE=$(hostname -s)
ETC=$DIR/etc RUN=$DIR/run LOG=$DIR/log STATE=$DIR/state
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF=$ETC/slurm.conf

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

alive() {  # alive NAME: the daemon's pid file names a live process
    local pidfile=$RUN/$1.pid
    [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND each second
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    die "$what not ready after ${seconds}s; see the logs in $LOG/"
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v mariadbd >/dev/null || missing+=(mariadb-server mariadb-client)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them with your package manager"
    say "installing ${missing[*]} (Debian packages; their system services are not started)"
    # policy-rc.d 101: the packages' own services stay stopped; this script runs its own daemons
    local policy=/usr/sbin/policy-rc.d ours=""
    if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && ours=1; fi
    local ok=1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$LOG/apt.log" 2>&1 \
        || { apt-get update -q >>"$LOG/apt.log" 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
                >>"$LOG/apt.log" 2>&1; } || ok=""
    [ -n "$ours" ] && rm -f $policy
    [ -n "$ok" ] || die "apt-get install ${missing[*]} failed; see $LOG/apt.log"
}

write_config() {
    local cpus mem_mb
    cpus=$(nproc)
    # 90% of the memory, so that slurmd's own count (which excludes some) is never below it and drains the node
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$ETC/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a single-node cluster for regbench's SLURM path.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
# munge on a socket of our own; cred_expire also sets how long a requeued job waits before it may start
# again (default 120 s): time-limit requeues are what the tests exercise
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$RUN/munge.socket,cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# no cgroups: plain process tracking, no task confinement (works in containers and on laptops)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
MailProg=/bin/true
# a job at its time limit gets SIGTERM, then SIGKILL this many seconds later
KillWait=10
MinJobAge=60
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
# the munge socket for talking to slurmdbd (AuthInfo's socket is not used for that connection)
AccountingStoragePass=$RUN/munge.socket
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$ETC/slurmdbd.conf" <<EOF
# Written by scripts/slurm-local.sh: accounting (what sacct reads) in a local MariaDB.
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=regbench
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
}

start_munge() {
    if alive munged; then say "munged already running (pid $(cat "$RUN/munged.pid"))"; return; fi
    [ -s "$ETC/munge.key" ] || { dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none; }
    chmod 400 "$ETC/munge.key"
    munged --force --key-file="$ETC/munge.key" --socket="$RUN/munge.socket" --pid-file="$RUN/munged.pid" \
        --log-file="$LOG/munged.log" --seed-file="$STATE/munged.seed"
    wait_for 20 munged sh -c "munge -n -S '$RUN/munge.socket' | unmunge -S '$RUN/munge.socket'"
    say "started munged (pid $(cat "$RUN/munged.pid"))"
}

mariadb_sql() { mariadb --no-defaults --socket="$RUN/mariadb.sock" -u root "$@"; }

start_mariadb() {
    if alive mariadb; then say "mariadb already running (pid $(cat "$RUN/mariadb.pid"))"; return; fi
    if [ ! -d "$STATE/mariadb/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$STATE/mariadb" --user=root --skip-test-db \
            --auth-root-authentication-method=normal >"$LOG/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $LOG/mariadb-install.log"
    fi
    # small buffers: the accounting database of a test cluster is tiny
    (setsid mariadbd --no-defaults --user=root --datadir="$STATE/mariadb" --socket="$RUN/mariadb.sock" \
        --pid-file="$RUN/mariadb.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$LOG/mariadb.log" \
        --innodb-buffer-pool-size=32M --innodb-log-file-size=16M --skip-name-resolve </dev/null >/dev/null 2>&1 &)
    wait_for 60 mariadb mariadb_sql -e "SELECT 1"
    mariadb_sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'regbench';
                    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
    say "started mariadb on 127.0.0.1:$DB_PORT (pid $(cat "$RUN/mariadb.pid"))"
}

start_slurmdbd() {
    if alive slurmdbd; then say "slurmdbd already running (pid $(cat "$RUN/slurmdbd.pid"))"; return; fi
    slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    say "started slurmdbd (pid $(cat "$RUN/slurmdbd.pid"))"
}

start_slurmctld() {
    if alive slurmctld; then say "slurmctld already running (pid $(cat "$RUN/slurmctld.pid"))"; return; fi
    # the cluster must exist in the accounting database before slurmctld registers with it
    sacctmgr -n list cluster format=cluster | grep -qw $CLUSTER || sacctmgr -i add cluster $CLUSTER >/dev/null
    slurmctld
    wait_for 60 slurmctld scontrol ping
    say "started slurmctld (pid $(cat "$RUN/slurmctld.pid"))"
}

start_slurmd() {
    if alive slurmd; then say "slurmd already running (pid $(cat "$RUN/slurmd.pid"))"; return; fi
    slurmd -N "$NODE"
    wait_for 60 slurmd sh -c "sinfo -h -n '$NODE' -o %T | grep -qvE 'down|unknown|not_responding|drain'"
    say "started slurmd (pid $(cat "$RUN/slurmd.pid"))"
}

link_system_conf() {
    if [ -L $SYSTEM_CONF ] && [ "$(readlink $SYSTEM_CONF)" = "$ETC/slurm.conf" ]; then return; fi
    if [ -e $SYSTEM_CONF ] || [ -L $SYSTEM_CONF ]; then
        say "$SYSTEM_CONF exists and is not ours: left alone; run SLURM commands with SLURM_CONF=$ETC/slurm.conf"
        return
    fi
    mkdir -p "$(dirname $SYSTEM_CONF)"
    ln -s "$ETC/slurm.conf" $SYSTEM_CONF
    say "linked $SYSTEM_CONF -> $ETC/slurm.conf"
}

up() {
    [ "$(id -u)" = 0 ] || die "run as root (slurmd starts jobs as their user; the packages need installing)"
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/slurmctld" "$STATE/slurmd"
    chmod 755 "$DIR"  # other users may submit jobs too (munge socket, slurm.conf)
    local start=$SECONDS
    install_packages
    write_config
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    link_system_conf
    # a node that was down (an earlier unclean stop) is put back into service
    if sinfo -h -n "$NODE" -o %T | grep -qE 'down|drain'; then
        scontrol update nodename="$NODE" state=resume
    fi
    wait_for 30 "node $NODE" sh -c "sinfo -h -n '$NODE' -o %T | grep -qE '^(idle|mixed|allocated)'"
    say "cluster $CLUSTER up in $((SECONDS - start))s: partition $PARTITION, node $NODE ($(nproc) CPUs), state in $DIR"
    say "try: sbatch --wrap hostname; or make sweep LAUNCHER=slurm ARGS='hydra.launcher.partition=$PARTITION ...'"
}

stop() {  # stop NAME: TERM the pid-file process, KILL it after 20 s
    local name=$1 pid
    if ! alive "$name"; then rm -f "$RUN/$name.pid"; return; fi
    pid=$(cat "$RUN/$name.pid")
    kill -TERM "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; say "killed $name (pid $pid)"; else say "stopped $name (pid $pid)"; fi
    rm -f "$RUN/$name.pid"
}

down() {
    if alive slurmctld; then
        local jobs
        jobs=$(squeue -h -o %i | wc -l)
        if [ "$jobs" -gt 0 ]; then
            say "cancelling $jobs job(s)"
            # shellcheck disable=SC2046
            scancel --quiet $(squeue -h -o %A | sort -u) || true
            for _ in $(seq 30); do [ "$(squeue -h | wc -l)" = 0 ] && break; sleep 1; done
        fi
    fi
    for name in slurmd slurmctld slurmdbd mariadb munged; do stop $name; done
    if [ -L $SYSTEM_CONF ] && [ "$(readlink $SYSTEM_CONF)" = "$ETC/slurm.conf" ]; then
        rm $SYSTEM_CONF && say "removed the link $SYSTEM_CONF"
    fi
    say "down (state and logs kept in $DIR; remove it for a fresh cluster)"
}

status() {
    local running=0
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if alive $name; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; running=$((running + 1))
        else echo "$name: not running"; fi
    done
    if alive slurmctld; then sinfo; squeue; fi
    echo "state and logs: $DIR"
    [ $running = 5 ]
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status   (state and logs in \$REGBENCH_SLURM_DIR, default /tmp/regbench-slurm)" >&2; exit 2 ;;
esac
