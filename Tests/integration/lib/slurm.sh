# A throw-away single-node Slurm for the integration tests (sourced).
# slurm_start: installs slurm-wlm and munge when missing, writes a config under
# $SLURM_TEST_DIR, starts munged, slurmctld and slurmd as root. slurm_stop: stops
# exactly the daemons it started.
SLURM_TEST_DIR="${SLURM_TEST_DIR:-/tmp/mancs-slurm}"

slurm_start() {
    local need=()
    for p in slurm-wlm munge; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
    done
    if ((${#need[@]})); then
        echo "installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || return 1
    fi
    slurm_stop 2>/dev/null
    rm -rf "$SLURM_TEST_DIR"; mkdir -p "$SLURM_TEST_DIR"/{state,spool,log,munge}
    local host cpus mem
    host=$(hostname -s); cpus=$(nproc); mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

    # munge: its own key and socket, so nothing of the machine's is touched.
    dd if=/dev/urandom bs=1 count=1024 of="$SLURM_TEST_DIR/munge/munge.key" 2>/dev/null
    chmod 400 "$SLURM_TEST_DIR/munge/munge.key"
    chmod 700 "$SLURM_TEST_DIR/munge"
    munged --force -S "$SLURM_TEST_DIR/munge/munge.socket" --key-file "$SLURM_TEST_DIR/munge/munge.key" \
        --pid-file "$SLURM_TEST_DIR/munge/munged.pid" --log-file "$SLURM_TEST_DIR/log/munged.log" \
        --seed-file "$SLURM_TEST_DIR/munge/munged.seed" || { echo "munged failed to start"; return 1; }

    cat > "$SLURM_TEST_DIR/slurm.conf" <<CONF
ClusterName=mancs-test
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SLURM_TEST_DIR/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SLURM_TEST_DIR/state
SlurmdSpoolDir=$SLURM_TEST_DIR/spool
SlurmctldPidFile=$SLURM_TEST_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_TEST_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_TEST_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_TEST_DIR/log/slurmd.log
SlurmctldPort=26817
SlurmdPort=26818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    export SLURM_CONF="$SLURM_TEST_DIR/slurm.conf"
    slurmctld -f "$SLURM_CONF" || { echo "slurmctld failed"; cat "$SLURM_TEST_DIR/log/slurmctld.log"; return 1; }
    slurmd -f "$SLURM_CONF" || { echo "slurmd failed"; cat "$SLURM_TEST_DIR/log/slurmd.log"; return 1; }
    local i
    for i in $(seq 1 30); do
        sinfo -h -o %T 2>/dev/null | grep -qE "^idle" && return 0
        sleep 1
    done
    echo "slurm did not become ready:"; sinfo; tail -20 "$SLURM_TEST_DIR/log/slurmctld.log" "$SLURM_TEST_DIR/log/slurmd.log"
    return 1
}

slurm_stop() {
    local f
    for f in slurmd slurmctld; do
        [ -f "$SLURM_TEST_DIR/$f.pid" ] && kill "$(cat "$SLURM_TEST_DIR/$f.pid")" 2>/dev/null
    done
    [ -f "$SLURM_TEST_DIR/munge/munged.pid" ] && kill "$(cat "$SLURM_TEST_DIR/munge/munged.pid")" 2>/dev/null
    sleep 1
    return 0
}
