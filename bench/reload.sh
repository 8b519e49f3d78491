#!/usr/bin/env bash
# rvs reload under load: wrk through rvsd (keep-alive, and Connection: close) while rvsd's
# TOML file is rewritten and reloaded 20 times with services and real servers added,
# changed and removed. Prints a markdown report on stdout (progress on stderr) and exits 1
# when a request failed or a reload was refused. See bench/README.md, "Reload under load".
#
# Environment (all optional):
#   RELOAD_INTERVAL=0.5   seconds between two reloads
#   RELOAD_WRK_CONNS=16   wrk -c of each of the two runs (-t1 each)
#   BENCH_SKIP_BUILD=1    use the rvs binaries already built (no cargo build)
#   BENCH_KEEP=1          keep the temporary directory (file versions, logs, wrk output)
#   CARGO_TARGET_DIR      where cargo puts the rvs binaries (default: <repo>/target)
set -euo pipefail

# the helpers of bench/run.sh (installation, processes, nginx real servers, cleanup)
# shellcheck source-path=SCRIPTDIR source=run.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run.sh"

INTERVAL=${RELOAD_INTERVAL:-0.5}
RCONNS=${RELOAD_WRK_CONNS:-16}
RELOADS=20
# ports of their own, so this runs beside bench/run.sh
ADDR=127.0.0.1
RS1_PORT=18191
RS2_PORT=18192
VIP_A=18180   # declared all along, changed at almost every reload: both wrk runs go here
VIP_B=18181   # added, changed, removed, added again, removed
VIP_C=18182   # added, changed, removed
RELOAD_ANSWERS=()
WRK_PIDS=()

# The file after reload K (0: at start). Each step: A's scheduler | A's servers |
# B (sched/servers or -) | C (same); servers are ID:WEIGHT of the two nginx real servers.
STEPS=(
    "rr|1:1,2:1|-|-"
    "wrr|1:2,2:1|-|-"
    "wlc|1:2,2:1|-|-"
    "wlc|1:2,2:1|rr/1:1|-"
    "wlc|1:1|rr/1:1|-"
    "wlc|1:1|rr/1:1,2:1|-"
    "rr|1:1|rr/1:1,2:1|wrr/2:1"
    "rr|1:1,2:3|rr/1:1,2:1|wrr/2:1"
    "rr|1:1,2:3|wlc/1:1,2:1|wrr/2:1"
    "sed|1:1,2:3|wlc/1:1,2:1|wrr/2:1"
    "sed|1:1,2:3|-|wrr/2:1"
    "sed|1:1,2:1|-|wrr/2:2"
    "wrr|1:1,2:1|-|wrr/2:2"
    "wrr|1:1|-|wrr/2:2"
    "wrr|1:1|rr/2:1|wrr/2:2"
    "lc|1:1|rr/2:1|wrr/2:2"
    "lc|1:1,2:1|rr/2:1|wrr/2:2"
    "lc|1:1,2:1|rr/2:1|wrr/1:1,2:2"
    "lc|1:1,2:1|-|wrr/1:1,2:2"
    "rr|1:1,2:1|-|wrr/1:1,2:2"
    "rr|1:1,2:1|-|-"
)

# toml_service PORT SCHED SERVERS: one [[service]] with TCP checks every second.
toml_service() {
    local port=$1 sched=$2 servers=$3 s id
    printf '\n[[service]]\naddress = "%s:%s"\nscheduler = "%s"\ndelay_loop = "1s"\n' \
        "$ADDR" "$port" "$sched"
    printf 'connect_timeout = "1s"\n'
    IFS=, read -ra s <<<"$servers"
    for id in "${s[@]}"; do
        local port_var=RS${id%%:*}_PORT
        printf '\n[[service.server]]\naddress = "%s:%s"\nweight = %s\n' \
            "$ADDR" "${!port_var}" "${id#*:}"
        printf '\n[[service.server.check]]\nkind = "tcp"\n'
    done
}

# write_step K: the TOML file of step K (written aside, then renamed into place).
write_step() {
    local sched_a servers_a b c
    IFS='|' read -r sched_a servers_a b c <<<"${STEPS[$1]}"
    {
        printf '# rvs reload bench, step %s\n[director]\n' "$1"
        # longer than the wrk runs: a removed server's keep-alive connections finish
        printf 'drain_grace = "2m"\n'
        toml_service "$VIP_A" "$sched_a" "$servers_a"
        [[ $b == - ]] || toml_service "$VIP_B" "${b%%/*}" "${b#*/}"
        [[ $c == - ]] || toml_service "$VIP_C" "${c%%/*}" "${c#*/}"
    } >"$TMP/rvs.toml.new"
    cp "$TMP/rvs.toml.new" "$TMP/rvs-step$1.toml"
    mv "$TMP/rvs.toml.new" "$TMP/rvs.toml"
}

start_rvsd() {
    local deadline=$((SECONDS + READY_SECONDS))
    [[ -z $RVS_BROKEN ]] || die "rvs: $RVS_BROKEN"
    write_step 0
    start_bg rvsd "$RVSD" --socket "$TMP/rvsd.sock" --config "$TMP/rvs.toml"
    RVSD_PID=$LAST_PID
    until rvsadm_q -L -n; do
        alive "$RVSD_PID" || die "rvsd exited: $(tail_log rvsd)"
        ((SECONDS < deadline)) || die "rvsd not ready: $(tail_log rvsd)"
        sleep 0.05
    done
    wait_serving "$VIP_A" "$RVSD_PID" rvsd 0 >/dev/null ||
        die "nothing answered on $ADDR:$VIP_A: $(tail_log rvsd)"
}

# wrk_start TAG [wrk options…]: one -t1 run on VIP A lasting the reloads and 3 s more.
wrk_start() {
    local tag=$1 secs
    shift
    secs=$(awk -v n="$RELOADS" -v i="$INTERVAL" 'BEGIN { printf "%d", n * i + 4.5 }')
    start_bg "wrk-$tag" timeout -k 5 $((secs + 20)) wrk -t1 -c"$RCONNS" -d"${secs}s" \
        -s "$BENCH_DIR/report.lua" "$@" "http://$ADDR:$VIP_A/"
    WRK_PIDS+=("$LAST_PID")
}

# The 20 reloads; every answer (or refusal) is kept for the report.
reloads() {
    local k out
    for ((k = 1; k <= RELOADS; k++)); do
        sleep "$INTERVAL"
        write_step "$k"
        if out=$(RVS_SOCKET="$TMP/rvsd.sock" "$RVSADM" --reload 2>&1); then
            RELOAD_ANSWERS+=("$out")
        else
            RELOAD_ANSWERS+=("REFUSED: $(tr '\n' ' ' <<<"$out")")
        fi
        log "reload $k: ${RELOAD_ANSWERS[-1]}"
    done
}

# row TAG: the report row of a finished wrk run; FAILED=1 when it had errors.
row() {
    local tag=$1 line kv
    local -A r=()
    line=$(grep '^RESULT ' "$TMP/wrk-$tag.log" | tail -n 1) || true
    if [[ -z $line ]]; then
        echo "| $tag | no result: $(tail_log "wrk-$tag" 2) | | | | | |"
        FAILED=1
        return
    fi
    for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
    echo "| $tag | ${r[requests]} | ${r[status]} | ${r[connect]} | ${r[read]} | ${r[write]} | ${r[timeout]} |"
    ((r[requests] > 0 && r[status] + r[connect] + r[read] + r[write] + r[timeout] == 0)) || FAILED=1
}

report() {
    local k tag
    FAILED=0
    echo "# rvs reload under load"
    echo
    echo "- date: $START_DATE (took $(elapsed) s); rvs $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- two nginx real servers ($ADDR:$RS1_PORT, :$RS2_PORT); rvsd --config, TCP checks every 1 s,"
    echo "  drain_grace 2m; $RELOADS reloads (\`rvsadm --reload\`) ${INTERVAL} s apart"
    echo "- both wrk runs (-t1 -c$RCONNS) on $ADDR:$VIP_A, declared all along and changed by most reloads"
    echo "  (scheduler, weights, a real server removed and added back twice); :$VIP_B and :$VIP_C are"
    echo "  added, changed and removed"
    echo
    echo "| wrk run | requests | non-2xx | connect errors | read errors | write errors | timeouts |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for tag in keep-alive close; do row "$tag"; done
    echo
    echo "| reload | answer |"
    echo "|---:|---|"
    for ((k = 0; k < ${#RELOAD_ANSWERS[@]}; k++)); do
        echo "| $((k + 1)) | ${RELOAD_ANSWERS[k]} |"
        [[ ${RELOAD_ANSWERS[k]} == reloaded:* ]] || FAILED=1
    done
    echo
    echo "\`rvsadm -Ln\` at the end:"
    echo
    echo '```'
    RVS_SOCKET="$TMP/rvsd.sock" "$RVSADM" -Ln
    echo '```'
    echo
    if ((FAILED)); then echo "Result: FAILED (errors above)"; else echo "Result: 0 failed requests, 0 socket errors, every reload applied"; fi
}

reload_main() {
    [[ $RCONNS =~ ^[1-9][0-9]*$ ]] || die "RELOAD_WRK_CONNS must be a positive integer"
    [[ $INTERVAL =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "RELOAD_INTERVAL must be a number of seconds"
    local tool port
    for tool in nginx wrk; do command -v "$tool" >/dev/null || apt_install "$tool"; done
    for port in "$VIP_A" "$VIP_B" "$VIP_C" "$RS1_PORT" "$RS2_PORT"; do
        ! port_busy "$port" || die "port $ADDR:$port is in use; stop whatever listens there first"
    done
    begin_run rvs-reload
    build_rvs
    start_real_servers
    start_rvsd
    log "wrk keep-alive and Connection: close on $ADDR:$VIP_A; $RELOADS reloads ${INTERVAL}s apart"
    wrk_start keep-alive
    wrk_start close -H 'Connection: close'
    sleep 1
    reloads
    wait "${WRK_PIDS[@]}" || true
    report
    log "done"
    ((FAILED == 0))
}

reload_main "$@"
