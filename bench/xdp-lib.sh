# shellcheck shell=bash
# Functions shared by the XDP packets-per-second benchmarks (bench/xdp-pps.sh, direct routing,
# and bench/xdp-nat.sh, NAT), sourced by them. The sourcing script sets ROOT (the repository),
# NAMESPACES (what cleanup removes), TMP and PIN (set by main and bpf_fs), and keeps its helper
# processes in PIDS through spawn and stop.

T0=$EPOCHREALTIME
PIN=""
TMP=""
PIDS=()
NAMESPACES=()

log() { printf '[%6.1fs] %s\n' "$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" "$*" >&2; }
die() { log "error: $*"; exit 1; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------- installation and build

install_tools() {
    local need=()
    command -v ip >/dev/null || need+=(iproute2)
    command -v nft >/dev/null || need+=(nftables)
    command -v ethtool >/dev/null || need+=(ethtool)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v clang >/dev/null || need+=(clang)
    [[ -e /usr/include/bpf/bpf_helpers.h ]] || need+=(libbpf-dev)
    ((${#need[@]} == 0)) && return 0
    log "installing ${need[*]}"
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 ||
        die "apt-get install ${need[*]} failed"
}

# Builds pktgen, rvsd and rvsadm (release) unless PPS_SKIP_BUILD=1; sets PKTGEN, RVSD, RVSADM.
build() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $target == /* ]] || target=$ROOT/$target
    PKTGEN=$target/release/examples/pktgen
    RVSD=$target/release/rvsd
    RVSADM=$target/release/rvsadm
    if [[ ${PPS_SKIP_BUILD:-0} != 1 ]]; then
        log "building pktgen, rvsd and rvsadm (release)"
        (cd "$ROOT" && cargo build --release -p rvs-bpf --example pktgen >&2) ||
            die "cargo build of pktgen failed"
        (cd "$ROOT" && cargo build --release -p rvsd -p rvsadm >&2) ||
            log "cargo build of rvsd/rvsadm failed: the rows with rvsd will be skipped"
    fi
    [[ -x $PKTGEN ]] || die "no $PKTGEN"
}

# ---------------------------------------------------------------- processes and cleanup

cleanup() {
    local rc=$? pid ns
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    [[ -n $PIN ]] && umount "$PIN" 2>/dev/null
    [[ -n $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}

# Makes TMP and arranges for cleanup on exit, Ctrl-C and SIGTERM.
start_work() {
    TMP=$(mktemp -d)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Starts a command in network namespace $1 in the background, remembered for cleanup; its pid
# in $LAST (`ip netns exec` execs the command, so that is the command's own pid).
spawn() {
    ip netns exec "$@" &
    LAST=$!
    PIDS+=("$LAST")
}

# Stops one process started by spawn.
stop() {
    local pid=$1 p keep=()
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# Waits (at most 5 seconds each) until an XDP program shows on every interface after namespace
# $1: `ip link` says xdp.
wait_xdp() {
    local ns=$1 dev i
    shift
    for dev in "$@"; do
        for ((i = 0; ; i++)); do
            in_ns "$ns" ip -o link show dev "$dev" | grep -q ' xdp' && break
            ((i < 50)) || return 1
            sleep 0.1
        done
    done
}

# Makes the network namespaces named in NAMESPACES, loopback up, IPv6 off.
make_namespaces() {
    local ns
    for ns in "${NAMESPACES[@]}"; do
        ip netns add "$ns" || die "cannot create network namespace $ns"
        in_ns "$ns" ip link set lo up
        in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
}

# A veth pair: NAME (with MAC) in NS, PEER in switch namespace SW, both up.
link() {
    local ns=$1 name=$2 mac=$3 peer=$4 sw=$5
    ip link add "$name" netns "$ns" address "$mac" type veth peer name "$peer" netns "$sw" ||
        die "cannot create veth $name/$peer"
    in_ns "$ns" ip link set "$name" up
    in_ns "$sw" ip link set "$peer" up
}

# A BPF filesystem of our own in TMP for the counters (`ip netns exec` mounts a fresh /sys,
# hiding /sys/fs/bpf, but not this one); sets PIN.
bpf_fs() {
    PIN=$TMP/bpf
    mkdir -p "$PIN"
    mount -t bpf bpf "$PIN" || die "cannot mount a BPF filesystem on $PIN"
}

# Starts rvsd in namespace $1 with the arguments after it, on CPU 1 when there is one (off
# the packets' CPU), its control socket $TMP/rvsd.sock, its log $TMP/rvsd.log; waits until
# rvsadm gets an answer. Sets ROW_PID and ROW_PROC; returns 1 with SKIP set when it fails.
start_rvsd() {
    local ns=$1 i
    shift
    RVS_SOCK=$TMP/rvsd.sock
    [[ -x $RVSD && -x $RVSADM ]] || { SKIP="no rvsd/rvsadm built"; return 1; }
    rm -f "$RVS_SOCK"
    spawn "$ns" taskset -c "$(($(nproc) > 1))" "$RVSD" "$@" --socket "$RVS_SOCK" 2>>"$TMP/rvsd.log"
    # shellcheck disable=SC2034 # the caller's
    ROW_PID=$LAST ROW_PROC=$LAST
    for ((i = 0; i < 50; i++)); do
        kill -0 "$ROW_PID" 2>/dev/null || break
        RVS_SOCKET=$RVS_SOCK in_ns "$ns" "$RVSADM" -L -n >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! kill -0 "$ROW_PID" 2>/dev/null; then
        wait "$ROW_PID" 2>/dev/null || true
        # shellcheck disable=SC2034 # the caller's
        SKIP="rvsd refused $*: $(tail -n 1 "$TMP/rvsd.log" 2>/dev/null)"
        return 1
    fi
}

# rvsadm in namespace $1 against the rvsd of start_rvsd, its output to rvsd's log.
rvsadm_in() {
    local ns=$1
    shift
    RVS_SOCKET=$RVS_SOCK in_ns "$ns" "$RVSADM" "$@" >>"$TMP/rvsd.log" 2>&1
}

# ---------------------------------------------------------------- figures

# CPU ticks (user+system) of process or thread $1, 0 when there is none.
ticks() {
    [[ -n $1 && -r /proc/$1/stat ]] || { echo 0; return; }
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# Percent of one CPU that $1 ticks (CLK_TCK) are over $2 nanoseconds.
cpu_pct() { awk -v k="$1" -v hz="$(getconf CLK_TCK)" -v ns="$2" 'BEGIN { printf "%.0f", 100 * k / hz / (ns / 1e9) }'; }

# The numbers among the words of $1, one a line.
numbers() { tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' || true; }

# The median of the numbers on stdin ("-" for none).
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
