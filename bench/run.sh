#!/usr/bin/env bash
# rvs bench: the rvs userspace data plane against HAProxy (mode tcp), nginx stream {} and a
# direct connection, on loopback, with wrk. Prints one markdown table on stdout (progress and
# notes on stderr). See bench/README.md for what each row means and the fairness rules.
#
# Environment (all optional):
#   BENCH_SECONDS=5       length of each measured wrk run
#   BENCH_ROUNDS=5        rounds; every cell is the median of its rounds (balancer order rotates)
#   BENCH_WARMUP=1        seconds of keep-alive traffic before measuring each balancer (0: none)
#   BENCH_WRK_THREADS=2   wrk -t
#   BENCH_CONNS=64        wrk -c for the `/` runs (keep-alive and new-connection)
#   BENCH_BULK_CONNS=16   wrk -c for the 1 MiB runs
#   BENCH_THREADS="1 2"   balancer thread counts
#   BENCH_BALANCERS="rvs haproxy nginx"
#   BENCH_SKIP_BUILD=1    use the rvs binaries already built (no cargo build)
#   BENCH_KEEP=1          keep the temporary directory (configs, logs, raw wrk output)
#   CARGO_TARGET_DIR      where cargo puts the rvs binaries (default: <repo>/target)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

RUN_SECONDS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
WARMUP=${BENCH_WARMUP:-1}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
BULK_CONNS=${BENCH_BULK_CONNS:-16}
THREAD_COUNTS=${BENCH_THREADS:-1 2}
BALANCERS=${BENCH_BALANCERS:-rvs haproxy nginx}

ADDR=127.0.0.1
VIP_PORT=18080
RS1_PORT=18081
RS2_PORT=18082
BODY_BYTES=64
BULK_BYTES=$((1024 * 1024))
# A balancer must answer HTTP on the VIP within this many seconds of being configured.
READY_SECONDS=5
# Errors (connect/read/write/timeout/non-2xx) above this per-mille of requests void a cell.
MAX_ERROR_PERMILLE=10

T0=$EPOCHREALTIME
START_DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
TMP=""
PIDS=()      # every long-running process this script started (cleanup kills their trees)
WRK_PID=""   # the wrk run in progress, if any
WRK_PREFIX=() # a command wrk runs under (bench/paired.sh's PAIRED_PIN: taskset)
NOTES=()     # footnotes printed under the table
RVSD="" RVSADM="" RVS_BROKEN=""
RVS_SOCK=""   # the control socket of the rvsd started last (start_rvs)
STREAM_LOAD=""

log() { printf '[%6.1fs] %s\n' "$(elapsed)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
note() { NOTES+=("$*"); log "note: $*"; }

check_args() {
    local value
    need_counts RUN_SECONDS ROUNDS WRK_THREADS CONNS BULK_CONNS
    [[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a whole number, got '$WARMUP'"
    for value in $THREAD_COUNTS; do
        [[ $value =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS: not a positive integer: '$value'"
    done
    for value in $BALANCERS; do
        [[ $value =~ ^(rvs|haproxy|nginx)$ ]] || die "BENCH_BALANCERS: unknown balancer '$value'"
    done
    ((CONNS >= WRK_THREADS && BULK_CONNS >= WRK_THREADS)) ||
        die "wrk needs at least as many connections as threads"
}

# ---------------------------------------------------------------- installation and build

apt_install() {
    [[ $(id -u) == 0 ]] || die "missing $*; install it (apt-get install -y $*) or run as root"
    log "installing $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; then
        apt-get update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
    fi
}

install_tools() {
    local missing=() tool
    for tool in haproxy nginx wrk; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
    for tool in awk sed timeout getconf; do
        command -v "$tool" >/dev/null || die "$tool is needed"
    done
}

# The load_module line nginx needs for stream {} (empty when the module is built in).
find_stream_module() {
    local info dir candidate
    info=$(nginx -V 2>&1)
    if [[ $info == *"--with-stream "* || $info == *"--with-stream" ]]; then
        return 0
    fi
    [[ $info == *"--with-stream=dynamic"* ]] || die "this nginx has no stream module"
    dir=$(sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p' <<<"$info")
    for candidate in ${dir:+"$dir"/ngx_stream_module.so} /usr/lib/nginx/modules/ngx_stream_module.so \
        /usr/share/nginx/modules/ngx_stream_module.so; do
        if [[ -f $candidate ]]; then
            STREAM_LOAD="load_module $candidate;"
            return 0
        fi
    done
    return 1
}

prepare_nginx_stream() {
    if ! find_stream_module; then
        apt_install libnginx-mod-stream
        find_stream_module || die "nginx stream module not found after installing libnginx-mod-stream"
    fi
}

build_rvs() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $target == /* ]] || target=$ROOT/$target
    RVSD=$target/release/rvsd
    RVSADM=$target/release/rvsadm
    if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
        log "building rvs (cargo build --release)"
        if ! (cd "$ROOT" && cargo build --release >&2); then
            RVS_BROKEN="cargo build --release failed"
            return 0
        fi
    fi
    [[ -x $RVSD && -x $RVSADM ]] || RVS_BROKEN="no rvsd/rvsadm under $target/release"
}

# ---------------------------------------------------------------- processes

# Pid and every descendant of it (children found through /proc, no external tools).
tree_pids() {
    local root=$1 stat rest pid ppid changed=1
    local -A in_tree=([$root]=1)
    [[ -d /proc/$root ]] || return 0
    while ((changed)); do
        changed=0
        for stat in /proc/[0-9]*/stat; do
            pid=${stat#/proc/}; pid=${pid%/stat}
            [[ -n ${in_tree[$pid]:-} ]] && continue
            read -r rest 2>/dev/null <"$stat" || continue
            rest=${rest##*) }
            ppid=${rest#* }; ppid=${ppid%% *}
            if [[ -n ${in_tree[$ppid]:-} ]]; then in_tree[$pid]=1; changed=1; fi
        done
    done
    printf '%s\n' "${!in_tree[@]}"
}

alive() { kill -0 "$1" 2>/dev/null; }

# Start a command in the background, its output in $TMP/NAME.log; its pid in LAST_PID.
start_bg() {
    local name=$1
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# Stop a process and its descendants: SIGTERM to the root, up to 5 s, then SIGKILL to all.
stop_tree() {
    local root=$1 pids pid deadline
    mapfile -t pids < <(tree_pids "$root")
    ((${#pids[@]})) || return 0
    kill -TERM "$root" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        local any=0
        for pid in "${pids[@]}"; do alive "$pid" && any=1; done
        ((any)) || break
        sleep 0.05
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait "$root" 2>/dev/null || true
}

cleanup() {
    set +e
    trap - INT TERM
    [[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_tree "${PIDS[i]}"; done
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    fi
}

# begin_run PREFIX: more descriptors, traps that stop everything started (cleanup), and the
# run's temporary directory TMP (/tmp/PREFIX.XXXXXX).
begin_run() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
}

# need_counts NAME…: each variable NAME must hold a positive integer.
need_counts() {
    local name
    for name in "$@"; do
        [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive integer, got '${!name}'"
    done
}

# ---------------------------------------------------------------- ports and probes

port_busy() {
    local port=$1
    if command -v ss >/dev/null; then
        [[ -n $(ss -Htln "sport = :$port" 2>/dev/null) ]] && return 0
    fi
    timeout 1 bash -c "exec 3<>/dev/tcp/$ADDR/$port" 2>/dev/null
}

wait_port_free() {
    local port=$1 deadline=$((SECONDS + 5))
    while port_busy "$port"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# One HTTP/1.1 GET / on a new connection; prints the answering server's X-Backend id.
http_probe() {
    local port=$1 out
    out=$(timeout 2 bash -c "exec 3<>/dev/tcp/$ADDR/$port || exit 1
        printf 'GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3
        cat <&3" 2>/dev/null) || return 1
    [[ $out == "HTTP/1.1 200"* ]] || return 1
    out=$(sed -n 's/^X-Backend: *\([0-9]*\).*/\1/p' <<<"$out")
    echo "${out:-?}"
}

# Wait (bounded) until PORT serves GET /, while process PID lives; then, for a balancer
# (ROUNDS > 0), check that round robin reaches both real servers in ROUNDS more connections
# (a note only: independent workers may each start their round at the same server).
wait_serving() {
    local port=$1 pid=$2 name=$3 rounds=${4:-6} deadline=$((SECONDS + READY_SECONDS)) seen="" id i
    until id=$(http_probe "$port"); do
        alive "$pid" || { note "$name: exited during start-up (log: $(tail_log "$name"))"; return 1; }
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
    ((rounds > 0)) || return 0
    seen=" $id"
    for ((i = 0; i < rounds; i++)); do
        id=$(http_probe "$port") && [[ $seen != *" $id"* ]] && seen+=" $id"
    done
    [[ $seen == *" 1"* && $seen == *" 2"* ]] ||
        note "$name: $((rounds + 1)) probe connections reached only server(s)$seen"
    return 0
}

# The last N lines of FILE on one line ("empty" when there are none).
one_line() {
    local text
    text=$(tail -n "$2" "$1" 2>/dev/null | tr -s '\n ' ' ' | sed 's/ $//' | cut -c1-300)
    printf '%s' "${text:-empty}"
}

# The last lines (default 3) of $TMP/NAME.log on one line.
tail_log() { one_line "$TMP/$1.log" "${2:-3}"; }

# What a started-but-silent balancer said about itself: its "ready" line, else its last line.
log_gist() {
    local line
    line=$(grep -m 1 -i 'ready' "$TMP/$1.log" 2>/dev/null) || line=$(tail_log "$1" 1)
    printf '%s' "${line:0:300}"
}

# ---------------------------------------------------------------- /proc accounting

# utime+stime in clock ticks, summed over the given pids.
cpu_ticks() {
    local pid rest total=0 f
    for pid in "$@"; do
        read -r rest 2>/dev/null <"/proc/$pid/stat" || continue
        rest=${rest##*) }
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# The machine's TCP congestion control: it decides whether sockets pace themselves (BBR
# without the fq qdisc does, with a timer), which moves the 1 MiB rows (bench/README.md).
congestion_control() { cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown; }

# Peak resident set (VmHWM) in KiB, summed over the given pids.
peak_rss_kib() {
    local pid total=0 kib
    for pid in "$@"; do
        kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# ---------------------------------------------------------------- wrk

# run_wrk TAG PORT PATH CONNS SECONDS [wrk options…]: sets W_RPS W_MIBS W_P99MS W_ERRS W_REQ
# (and W_P50MS W_P999MS)
# and returns 0 when the run produced a usable figure.
run_wrk() {
    local tag=$1 port=$2 path=$3 conns=$4 secs=$5 line
    shift 5
    W_RPS=n/a W_MIBS=n/a W_P99MS=n/a W_P50MS=n/a W_P999MS=n/a W_ERRS="" W_REQ=0
    W_MEANMS=n/a W_P5MS=n/a W_P25MS=n/a W_P75MS=n/a
    timeout -k 5 $((secs + 20)) "${WRK_PREFIX[@]}" wrk -t"$WRK_THREADS" -c"$conns" -d"${secs}s" --latency \
        -s "$BENCH_DIR/report.lua" "$@" "http://$ADDR:$port$path" >"$TMP/wrk-${tag// /_}.out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=""
    line=$(grep '^RESULT ' "$TMP/wrk-${tag// /_}.out" | tail -n 1) || true
    [[ -n $line ]] || { note "$tag: wrk gave no result ($(one_line "$TMP/wrk-${tag// /_}.out" 2))"; return 1; }
    local -A r=()
    local kv
    for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
    W_REQ=${r[requests]}
    local errs=$((r[connect] + r[read] + r[write] + r[timeout] + r[status]))
    ((errs == 0)) || W_ERRS="connect ${r[connect]}, read ${r[read]}, write ${r[write]}, timeout ${r[timeout]}, non-2xx ${r[status]}"
    if ((W_REQ == 0 || errs * 1000 > W_REQ * MAX_ERROR_PERMILLE)); then
        note "$tag: void ($W_REQ requests; errors: ${W_ERRS:-none})"
        return 1
    fi
    [[ -z $W_ERRS ]] || note "$tag: $W_REQ requests with errors: $W_ERRS"
    # shellcheck disable=SC2034  # W_P50MS, W_P999MS and the spread (mean, p5, p25, p75): for bench/paired.sh
    read -r W_RPS W_MIBS W_P99MS W_P50MS W_P999MS W_MEANMS W_P5MS W_P25MS W_P75MS < <(awk \
        -v q="${r[requests]}" -v b="${r[bytes]}" -v d="${r[duration_us]}" -v p="${r[p99_us]}" \
        -v m="${r[p50_us]}" -v t="${r[p999_us]}" -v a="${r[mean_us]}" -v p5="${r[p5_us]}" \
        -v p25="${r[p25_us]}" -v p75="${r[p75_us]}" \
        'BEGIN { s = d / 1e6; printf "%.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", q / s, b / s / 1048576,
                 p / 1000, m / 1000, t / 1000, a / 1000, p5 / 1000, p25 / 1000, p75 / 1000 }')
    return 0
}

# Keep-alive traffic whose figures are thrown away (connection pools, page cache, caches).
warm_up() {
    ((WARMUP > 0)) || return 0
    log "$1: warm-up ${WARMUP}s"
    timeout -k 5 $((WARMUP + 20)) "${WRK_PREFIX[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARMUP}s" \
        "http://$ADDR:$2/" >"$TMP/wrk-${1// /_}-warmup.out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=""
}

# ---------------------------------------------------------------- measurements

result() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$TMP/results.tsv"; }

all_na() {
    local m
    for m in ka_rps close_rps bulk_mibs p99_ms rss_mib cpu_pct cpu_us_req; do result "$m" "$2" "$1" n/a; done
}

# measure NAME THREADS PID: the three wrk runs through 127.0.0.1:VIP_PORT; PID is the balancer's
# root process (its descendants are counted with it). NAME=direct measures one real server.
measure() {
    local name=$1 threads=$2 pid=$3 port=$VIP_PORT tag pids t1 t2 c1 c2 pct usreq
    [[ $name == direct ]] && port=$RS1_PORT
    tag="$name t=$threads"
    [[ $name != direct ]] || tag=direct
    warm_up "$tag" "$port"
    mapfile -t pids < <(tree_pids "$pid")
    log "$tag: keep-alive, ${RUN_SECONDS}s"
    c1=$(cpu_ticks "${pids[@]}"); t1=$EPOCHREALTIME
    if run_wrk "$tag keep-alive" "$port" / "$CONNS" "$RUN_SECONDS"; then
        c2=$(cpu_ticks "${pids[@]}"); t2=$EPOCHREALTIME
        result ka_rps "$threads" "$name" "$W_RPS"
        result p99_ms "$threads" "$name" "$W_P99MS"
        if [[ $name != direct ]]; then
            read -r pct usreq < <(awk -v c="$((c2 - c1))" -v hz="$CLK_TCK" -v a="$t1" -v b="$t2" \
                -v q="$W_REQ" 'BEGIN { s = c / hz; printf "%.3f %.3f\n", 100 * s / (b - a), q ? 1e6 * s / q : 0 }')
            result cpu_pct "$threads" "$name" "$pct"
            result cpu_us_req "$threads" "$name" "$usreq"
        fi
    else
        local m
        for m in ka_rps p99_ms cpu_pct cpu_us_req; do result "$m" "$threads" "$name" n/a; done
    fi
    log "$tag: new connection per request, ${RUN_SECONDS}s"
    run_wrk "$tag new-connection" "$port" / "$CONNS" "$RUN_SECONDS" -H 'Connection: close' || true
    result close_rps "$threads" "$name" "$W_RPS"
    log "$tag: 1 MiB transfers, ${RUN_SECONDS}s"
    run_wrk "$tag 1MiB" "$port" /1m "$BULK_CONNS" "$RUN_SECONDS" || true
    result bulk_mibs "$threads" "$name" "$W_MIBS"
    if [[ $name != direct ]]; then
        if alive "$pid"; then
            result rss_mib "$threads" "$name" "$(awk -v k="$(peak_rss_kib "${pids[@]}")" 'BEGIN { printf "%.3f", k / 1024 }')"
        else
            note "$tag: the balancer exited during the runs (log: $(tail_log "$name-$threads"))"
            result rss_mib "$threads" "$name" n/a
        fi
    fi
}

# ---------------------------------------------------------------- balancers

# Fill a template: render TEMPLATE OUT KEY=VALUE…
render() {
    local template=$1 out=$2 kv script=""
    shift 2
    for kv in "$@"; do script+="s|@${kv%%=*}@|${kv#*=}|g;"; done
    sed "$script" "$template" >"$out"
}

start_real_servers() {
    mkdir -p "$TMP/www" "$TMP/tmp"
    printf '%*s' "$BODY_BYTES" '' | tr ' ' 'x' >"$TMP/body"
    head -c "$BULK_BYTES" /dev/zero | tr '\0' 'r' >"$TMP/www/1m"
    chmod 755 "$TMP" "$TMP/www"
    chmod 644 "$TMP/www/1m"
    local id port
    for id in 1 2; do
        port=RS${id}_PORT
        render "$BENCH_DIR/conf/realserver.conf.in" "$TMP/rs$id.conf" DIR="$TMP" ID="$id" \
            ADDR="$ADDR" PORT="${!port}" BODY="$(<"$TMP/body")"
        start_bg "rs$id" nginx -e "$TMP/rs$id-error.log" -p "$TMP" -c "$TMP/rs$id.conf"
        wait_serving "${!port}" "$LAST_PID" "rs$id" 0 >/dev/null ||
            die "real server $id did not come up: $(tail_log "rs$id") $(tail -n 3 "$TMP/rs$id-error.log" 2>/dev/null)"
        declare -g "RS${id}_PID=$LAST_PID"
    done
}

# start_haproxy THREADS [splice|perthread]: with "splice", HAProxy splices both directions
# (bench/paired.sh's haproxy-splice; HAProxy's default, used in the table, copies through its
# buffers); with "perthread", each thread has a listening socket of its own (haproxy-perthread).
start_haproxy() {
    local threads=$1 name=haproxy${2:+-$2}
    [[ -z ${2:-} || $2 == @(splice|perthread) ]] || die "start_haproxy: unknown variant '$2'"
    render "$BENCH_DIR/conf/haproxy.cfg.in" "$TMP/$name-$threads.cfg" THREADS="$threads" \
        ADDR="$ADDR" VIP_PORT="$VIP_PORT" RS1_PORT="$RS1_PORT" RS2_PORT="$RS2_PORT"
    if [[ ${2:-} == splice ]]; then
        sed -i 's/^defaults$/&\n    option splice-request\n    option splice-response/' "$TMP/$name-$threads.cfg"
    elif [[ ${2:-} == perthread ]]; then
        # one listening socket per thread (SO_REUSEPORT, as rvs's workers) instead of one
        # socket that every thread polls
        local binds="" i
        for ((i = 1; i <= threads; i++)); do
            binds+="    bind $ADDR:$VIP_PORT thread $i\\n"
        done
        sed -i "s|^    bind .*\$|${binds%\\n}|" "$TMP/$name-$threads.cfg"
    fi
    start_bg "$name-$threads" haproxy -db -f "$TMP/$name-$threads.cfg"
    LB_PID=$LAST_PID
}

start_nginx_lb() {
    local threads=$1
    render "$BENCH_DIR/conf/nginx-stream.conf.in" "$TMP/nginx-$threads.conf" THREADS="$threads" \
        DIR="$TMP" ADDR="$ADDR" VIP_PORT="$VIP_PORT" RS1_PORT="$RS1_PORT" RS2_PORT="$RS2_PORT" \
        LOAD_STREAM="$STREAM_LOAD"
    start_bg "nginx-$threads" nginx -e "$TMP/nginx-lb-error.log" -p "$TMP" -c "$TMP/nginx-$threads.conf"
    LB_PID=$LAST_PID
}

rvsadm_q() { RVS_SOCKET="${RVS_SOCK:-$TMP/rvsd.sock}" "$RVSADM" "$@" >>"$TMP/rvsadm.log" 2>&1; }

# start_rvs THREADS [NAME]: rvsd ($RVSD) with the bench's service on $ADDR:$VIP_PORT; NAME
# (default rvs) names its log and control socket, so several can run at once (bench/paired.sh).
start_rvs() {
    local threads=$1 name=${2:-rvs} deadline
    [[ -z $RVS_BROKEN ]] || { note "rvs: $RVS_BROKEN"; return 1; }
    RVS_SOCK=$TMP/$name.sock
    rm -f "$RVS_SOCK"
    start_bg "$name-$threads" "$RVSD" --socket "$RVS_SOCK" --workers "$threads" --dataplane userspace
    LB_PID=$LAST_PID
    deadline=$((SECONDS + READY_SECONDS))
    until rvsadm_q -L -n; do
        if ! alive "$LB_PID" || ((SECONDS >= deadline)); then
            note "$name t=$threads: rvsd not ready (log: $(tail_log "$name-$threads"))"
            return 1
        fi
        sleep 0.05
    done
    if ! rvsadm_q -A -t "$ADDR:$VIP_PORT" -s rr ||
        ! rvsadm_q -a -t "$ADDR:$VIP_PORT" -r "$ADDR:$RS1_PORT" -m ||
        ! rvsadm_q -a -t "$ADDR:$VIP_PORT" -r "$ADDR:$RS2_PORT" -m; then
        note "$name t=$threads: rvsadm refused the rules ($(one_line "$TMP/rvsadm.log" 2))"
        return 1
    fi
}

# One balancer at one thread count: start, wait until it serves, measure, stop.
bench_balancer() {
    local name=$1 threads=$2
    LB_PID=""
    wait_port_free "$VIP_PORT" || die "$ADDR:$VIP_PORT still busy before starting $name"
    log "$name t=$threads: starting"
    if ! "start_${name/nginx/nginx_lb}" "$threads"; then
        all_na "$name" "$threads"
    elif ! wait_serving "$VIP_PORT" "$LB_PID" "$name-$threads" >/dev/null; then
        ! alive "$LB_PID" ||
            note "$name t=$threads: nothing answered HTTP on $ADDR:$VIP_PORT within ${READY_SECONDS}s" \
                "of being configured (its log: $(log_gist "$name-$threads"))"
        all_na "$name" "$threads"
    else
        measure "$name" "$threads" "$LB_PID"
    fi
    [[ -z $LB_PID ]] || stop_tree "$LB_PID"
}

# ---------------------------------------------------------------- report

print_report() {
    local cpu kernel
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
    kernel=$(uname -sr)
    echo "# rvs bench"
    echo
    echo "- date: $START_DATE (took $(elapsed) s)"
    echo "- kernel: $kernel; TCP congestion control: $(congestion_control)"
    echo "- CPU: ${cpu:-unknown}, $(nproc) cores"
    echo "- rvs: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown);" \
        "$(haproxy -v 2>/dev/null | head -n 1 | cut -d' ' -f1-3);" \
        "$(nginx -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "- every cell: the median of $ROUNDS rounds; each round measures every balancer once," \
        "the order rotating from round to round"
    echo "- wrk -t$WRK_THREADS -d${RUN_SECONDS}s: -c$CONNS on \`/\` ($BODY_BYTES-byte body)," \
        "-c$BULK_CONNS on \`/1m\` (1 MiB); warm-up ${WARMUP}s per balancer;" \
        "two nginx real servers (1 worker each), round robin, all on loopback"
    echo
    awk -f "$BENCH_DIR/table.awk" "$TMP/results.tsv"
    echo
    echo "rvs/best peer compares rvs with the better of haproxy and nginx on that row;" \
        ">1.0 always means rvs is better (rates: rvs/peer; latency, RSS, CPU: peer/rvs)." \
        "rvs/direct is rvs's 1 MiB throughput over the direct run's. direct is measured once per round" \
        "(one real server, no balancer) and repeated on every threads row. n/a: the balancer" \
        "did not start or serve, or more than $((MAX_ERROR_PERMILLE / 10))% of its requests failed in most rounds."
    if ((${#NOTES[@]})); then
        echo
        echo "Notes:"
        local n
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
}

main() {
    check_args
    install_tools
    prepare_nginx_stream
    local port
    for port in "$VIP_PORT" "$RS1_PORT" "$RS2_PORT"; do
        ! port_busy "$port" || die "port $ADDR:$port is in use; stop whatever listens there first"
    done
    CLK_TCK=$(getconf CLK_TCK)
    begin_run rvs-bench
    : >"$TMP/results.tsv"
    [[ " $BALANCERS " != *" rvs "* ]] || build_rvs
    local nthreads nbal
    nthreads=$(wc -w <<<"$THREAD_COUNTS"); nbal=$(wc -w <<<"$BALANCERS")
    log "plan: $((ROUNDS * (nthreads * nbal + 1) * (3 * RUN_SECONDS + WARMUP))) s of traffic at most"
    start_real_servers
    local round threads name order
    read -ra order <<<"$BALANCERS"
    for ((round = 1; round <= ROUNDS; round++)); do
        log "round $round of $ROUNDS: ${order[*]}"
        measure direct - "$RS1_PID"
        for threads in $THREAD_COUNTS; do
            for name in "${order[@]}"; do bench_balancer "$name" "$threads"; done
        done
        # the next round starts with the next balancer: none is always first (or last)
        order=("${order[@]:1}" "${order[0]}")
    done
    print_report
    log "done"
}

# bench/reload.sh sources this file for its helpers: run only when executed.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
