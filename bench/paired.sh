#!/usr/bin/env bash
# rvs paired bench: rvs, HAProxy (mode tcp) and nginx stream {} run side by side, each on a
# port of its own before the same two nginx real servers, and take turns under wrk in short
# runs (order rotating). Each round's figures are compared within the round: whatever the
# shared machine does over minutes falls on every balancer alike, so the paired ratios are
# steadier than ratios of bench/run.sh's medians (which are minutes apart). Use it to decide
# whether a change moved a row; bench/run.sh remains the whole table (bulk, RSS, CPU).
# Prints markdown on stdout (progress on stderr). See bench/README.md, "Paired runs".
#
# Environment (all optional):
#   PAIRED_ROUNDS=10         rounds (every balancer runs once per round and mode)
#   PAIRED_SECONDS=2         length of each wrk run
#   PAIRED_MODES="keep-alive close"   keep-alive requests, one connection per request, and/or
#                            bulk (1 MiB responses on BENCH_BULK_CONNS connections; MiB/s)
#   PAIRED_THREADS=1         worker threads of every balancer
#   PAIRED_PEERS="haproxy nginx"   the peers that run beside rvs (any of them), and direct:
#                            wrk straight to real server 1 (no balancer), as bench/run.sh's;
#                            haproxy-splice: HAProxy with option splice-request/-response;
#                            haproxy-perthread: HAProxy with a listener per thread (bind ...
#                            thread N, SO_REUSEPORT), the layout of rvs's workers;
#                            splice-relay: bench/splice-relay.c, the least a relay can do;
#                            copy-relay: the same program copying through a buffer with
#                            recv/send instead of splicing (the floor for small messages)
#   PAIRED_BUILDS=""         more rvsd binaries to compare, as NAME=PATH (space separated)
#   PAIRED_SPREAD=""         1: also a table per mode of the latency's spread (mean, p5,
#                            p25, p75), to tell a wider distribution from a slower one
#   PAIRED_PIN=""            BALANCER_CPUS/LOAD_CPUS (taskset lists, e.g. 0/1): every balancer's
#                            threads run on the first CPUs only, wrk and the real servers on the
#                            second, as on a director that does not share its CPUs with clients
#                            and servers (unset: everything shares every CPU, as in the table)
#   BENCH_WRK_THREADS=2, BENCH_CONNS=64, BENCH_SKIP_BUILD, BENCH_KEEP, CARGO_TARGET_DIR as
#   in bench/run.sh
set -euo pipefail

# the helpers of bench/run.sh (installation, processes, real servers, wrk, cleanup)
# shellcheck source-path=SCRIPTDIR source=run.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run.sh"

P_ROUNDS=${PAIRED_ROUNDS:-10}
P_SECONDS=${PAIRED_SECONDS:-2}
P_MODES=${PAIRED_MODES:-keep-alive close}
P_THREADS=${PAIRED_THREADS:-1}
P_BUILDS=${PAIRED_BUILDS:-}
P_PEERS=${PAIRED_PEERS:-haproxy nginx}
P_PIN=${PAIRED_PIN:-}
P_SPREAD=${PAIRED_SPREAD:-}
# ports of their own, so this runs beside bench/run.sh and bench/reload.sh
RS1_PORT=18281
RS2_PORT=18282
FIRST_PORT=18290

# the peers PAIRED_PEERS may name (an extended regular expression)
PEER_NAMES='haproxy|nginx|direct|haproxy-splice|haproxy-perthread|splice-relay|copy-relay'
NAMES=()   # balancers, in start order
PORTS=()   # their ports

paired_args() {
    local value
    need_counts P_ROUNDS P_SECONDS P_THREADS WRK_THREADS CONNS
    for value in $P_MODES; do
        [[ $value =~ ^(keep-alive|close|bulk)$ ]] || die "PAIRED_MODES: unknown mode '$value'"
    done
    for value in $P_PEERS; do
        [[ $value =~ ^($PEER_NAMES)$ ]] || die "PAIRED_PEERS: unknown peer '$value'"
    done
    for value in $P_BUILDS; do
        [[ $value =~ ^[a-z][a-z0-9_-]*=.+ ]] || die "PAIRED_BUILDS: '$value' is not NAME=PATH"
        [[ -x ${value#*=} ]] || die "PAIRED_BUILDS: ${value#*=} is not an executable"
        [[ ! ${value%%=*} =~ ^(rvs|$PEER_NAMES)$ ]] || die "PAIRED_BUILDS: the name ${value%%=*} is taken"
    done
    ((CONNS >= WRK_THREADS)) || die "wrk needs at least as many connections as threads"
    [[ $P_SPREAD =~ ^(|0|1)$ ]] || die "PAIRED_SPREAD must be 1, 0 or empty, got '$P_SPREAD'"
    if [[ -n $P_PIN ]]; then
        [[ $P_PIN =~ ^[0-9,-]+/[0-9,-]+$ ]] || die "PAIRED_PIN: '$P_PIN' is not BALANCER_CPUS/LOAD_CPUS"
        command -v taskset >/dev/null || apt_install util-linux
        local list err cpu n=0
        local -A side=()
        for list in "${P_PIN%/*}" "${P_PIN#*/}"; do
            n=$((n + 1))
            err=$(taskset -c "$list" true 2>&1) || die "PAIRED_PIN: CPUs $list: $err"
            for cpu in $(cpu_list "$list"); do
                [[ -z ${side[$cpu]:-} || ${side[$cpu]} == "$n" ]] ||
                    die "PAIRED_PIN: CPU $cpu is in both lists; the balancers need CPUs of their own"
                side[$cpu]=$n
            done
        done
    fi
}

# cpu_list LIST: the CPUs of a taskset list (0,2-3 gives 0 2 3).
cpu_list() {
    local part
    for part in ${1//,/ }; do
        if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
    done
}

# pin PID CPUS: every thread of PID and of its descendants onto CPUS (threads they start later
# inherit it).
pin() {
    local pid
    for pid in $(tree_pids "$1"); do
        taskset -a -p -c "$2" "$pid" >/dev/null || die "taskset could not pin $pid to CPUs $2"
    done
}

# bench/splice-relay.c into $TMP (a C compiler is there wherever cargo can link).
build_splice_relay() {
    command -v cc >/dev/null || apt_install gcc libc6-dev
    cc -O2 -pthread -o "$TMP/splice-relay" "$BENCH_DIR/splice-relay.c" ||
        die "splice-relay: the C compiler failed"
}

# start_one NAME [RVSD]: start balancer NAME on the next port and wait until it serves.
start_one() {
    local name=$1 port=$((FIRST_PORT + ${#NAMES[@]})) rvsd=${2:-}
    if [[ $name == direct ]]; then
        NAMES+=(direct)
        PORTS+=("$RS1_PORT")
        return
    fi
    wait_port_free "$port" || die "$ADDR:$port is busy"
    VIP_PORT=$port
    LB_PID=""
    case $name in
        haproxy) start_haproxy "$P_THREADS" ;;
        haproxy-splice) start_haproxy "$P_THREADS" splice ;;
        haproxy-perthread) start_haproxy "$P_THREADS" perthread ;;
        nginx) start_nginx_lb "$P_THREADS" ;;
        splice-relay | copy-relay)
            RELAY_COPY=$([[ $name == copy-relay ]] && echo 1 || echo 0) \
                start_bg "$name-$P_THREADS" "$TMP/splice-relay" "$P_THREADS" "$port" "$RS1_PORT" "$RS2_PORT"
            LB_PID=$LAST_PID
            ;;
        *) RVSD=${rvsd:-$RVSD} start_rvs "$P_THREADS" "$name" || die "$name did not start" ;;
    esac
    wait_serving "$port" "$LB_PID" "$name-$P_THREADS" >/dev/null ||
        die "$name: nothing answered on $ADDR:$port (log: $(tail_log "$name-$P_THREADS"))"
    [[ -z $P_PIN ]] || pin "$LB_PID" "${P_PIN%/*}"
    NAMES+=("$name")
    PORTS+=("$port")
}

# report_mode MODE FILE COLUMNS: the tables of one mode from FILE (mode round name and four
# figures per line), COLUMNS naming the four figures ("|"-separated). A first column named
# "rate" is the mode's rate (higher is better); every other figure is a latency.
report_mode() {
    local mode=$1 file=$2 cols=$3 rate=0
    if [[ $cols == rate\|* ]]; then
        rate=1
        cols="$([[ $mode == bulk ]] && echo MiB/s || echo req/s)|${cols#rate|}"
    fi
    awk -v mode="$mode" -v names="${NAMES[*]}" -v peers="^($PEER_NAMES)$" -v cols="$cols" \
        -v rate="$rate" '
        # two-sided sign test: the chance of a split of m rounds at least as uneven as w : m - w
        function sign_p(w, m,   lo, i, c, p) {
            if (m == 0) return 1
            lo = w < m - w ? w : m - w
            c = 1; p = 0
            for (i = 0; i <= lo; i++) { p += c; c = c * (m - i) / (i + 1) }
            p = 2 * p / 2 ^ m
            return p > 1 ? 1 : p
        }
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $1 == mode { v[$3, $2, 1] = $4; v[$3, $2, 2] = $5; v[$3, $2, 3] = $6; v[$3, $2, 4] = $7; seen[$3, $2] = 1; rounds[$2] = 1 }
        END {
            n = split(names, nm, " ")
            split(cols, col, "|")
            printf "| %s | %s | %s | %s | %s | runs |\n|---|---:|---:|---:|---:|---:|\n", "balancer", col[1], col[2], col[3], col[4]
            for (i = 1; i <= n; i++) {
                printf "| %s", nm[i]
                for (c = 1; c <= 4; c++) {
                    k = 0; for (r in rounds) if (seen[nm[i], r]) a[++k] = v[nm[i], r, c]
                    printf(c == 1 && rate ? " | %.0f" : " | %.2f", k ? median(a, k) : 0)
                }
                printf " | %d |\n", k
            }
            print ""
            print "Paired: the median over rounds of the round'"'"'s ratio; above 1.0 the first is better"
            print "(" (rate ? (mode == "bulk" ? "more bytes" : "more requests") " per second, " : "") "lower latency)."
            print ""
            printf "| pair | %s | %s | %s | %s | rounds |\n|---|---:|---:|---:|---:|---:|\n", col[1], col[2], col[3], col[4]
            # one pass per pair: its median row here, its sign-test row kept for the next table
            signs = ""
            for (i = 1; i <= n; i++) {
                if (nm[i] ~ peers) continue
                for (j = 1; j <= n; j++) {
                    if (j == i || (nm[j] !~ peers && nm[j] != "rvs")) continue
                    if (nm[j] == "rvs" && nm[i] == "rvs") continue
                    printf "| %s / %s", nm[i], nm[j]
                    signs = signs sprintf("| %s / %s", nm[i], nm[j])
                    for (c = 1; c <= 4; c++) {
                        k = 0; w = 0; l = 0
                        for (r in rounds) if (seen[nm[i], r] && seen[nm[j], r] && v[nm[i], r, c] > 0 && v[nm[j], r, c] > 0) {
                            x = c == 1 && rate ? v[nm[i], r, c] / v[nm[j], r, c] : v[nm[j], r, c] / v[nm[i], r, c]
                            a[++k] = x
                            if (x > 1) w++; else if (x < 1) l++
                        }
                        printf " | %.3f", k ? median(a, k) : 0
                        signs = signs sprintf(" | %d/%d (p %.2f)", w, w + l, sign_p(w, w + l))
                    }
                    printf " | %d |\n", k
                    signs = signs " |\n"
                }
            }
            print ""
            print "Rounds in which the first of the pair was better, and the chance of a split at least as"
            print "uneven if the two were equal (two-sided sign test; ties left out): a ratio whose rounds"
            print "split evenly is noise, however far from 1.0 its median lies."
            print ""
            printf "| pair | %s | %s | %s | %s |\n|---|---:|---:|---:|---:|\n", col[1], col[2], col[3], col[4]
            printf "%s", signs
        }' "$file"
}

paired_main() {
    check_args
    paired_args
    install_tools
    prepare_nginx_stream
    begin_run rvs-paired
    : >"$TMP/paired.tsv"
    : >"$TMP/spread.tsv"
    build_rvs
    [[ -z $RVS_BROKEN ]] || die "rvs: $RVS_BROKEN"
    [[ " $P_PEERS " != *" splice-relay "* && " $P_PEERS " != *" copy-relay "* ]] || build_splice_relay
    log "plan: $((P_ROUNDS * $(wc -w <<<"$P_MODES") * (1 + $(wc -w <<<"$P_PEERS $P_BUILDS")) * P_SECONDS)) s of traffic"
    start_real_servers
    if [[ -n $P_PIN ]]; then
        pin "$RS1_PID" "${P_PIN#*/}"
        pin "$RS2_PID" "${P_PIN#*/}"
        WRK_PREFIX=(taskset -c "${P_PIN#*/}")
    fi
    local b
    for b in $P_PEERS rvs; do start_one "$b"; done
    for b in $P_BUILDS; do start_one "${b%%=*}" "${b#*=}"; done
    local i mode round k opts
    for ((i = 0; i < ${#NAMES[@]}; i++)); do warm_up "${NAMES[i]}" "${PORTS[i]}"; done
    local path conns rate
    for mode in $P_MODES; do
        opts=()
        path=/
        conns=$CONNS
        case $mode in
            close) opts=(-H 'Connection: close') ;;
            bulk) path=/1m conns=$BULK_CONNS ;;
        esac
        for ((round = 1; round <= P_ROUNDS; round++)); do
            log "$mode: round $round of $P_ROUNDS"
            for ((i = 0; i < ${#NAMES[@]}; i++)); do
                k=$(((i + round) % ${#NAMES[@]}))
                if run_wrk "${NAMES[k]} $mode $round" "${PORTS[k]}" "$path" "$conns" "$P_SECONDS" "${opts[@]}"; then
                    rate=$W_RPS
                    [[ $mode != bulk ]] || rate=$W_MIBS
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$round" "${NAMES[k]}" \
                        "$rate" "$W_P50MS" "$W_P99MS" "$W_P999MS" >>"$TMP/paired.tsv"
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$round" "${NAMES[k]}" \
                        "$W_MEANMS" "$W_P5MS" "$W_P25MS" "$W_P75MS" >>"$TMP/spread.tsv"
                fi
            done
        done
    done
    echo "## Paired runs, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "$P_THREADS worker thread(s) each; wrk -t$WRK_THREADS -c$CONNS on \`/\` (-c$BULK_CONNS on \`/1m\` in bulk), ${P_SECONDS}s per run," \
        "$P_ROUNDS rounds; $(nproc) CPUs; TCP congestion control $(congestion_control);" \
        "$(haproxy -v 2>/dev/null | head -n 1 | cut -d' ' -f1-3)."
    [[ -z $P_PIN ]] ||
        echo "Pinned: the balancers on CPUs ${P_PIN%/*}, wrk and the real servers on CPUs ${P_PIN#*/}."
    for mode in $P_MODES; do
        echo
        echo "### $mode"
        echo
        report_mode "$mode" "$TMP/paired.tsv" "rate|p50 ms|p99 ms|p99.9 ms"
        if [[ $P_SPREAD == 1 ]]; then
            echo
            echo "#### $mode: the latency's spread"
            echo
            report_mode "$mode" "$TMP/spread.tsv" "mean ms|p5 ms|p25 ms|p75 ms"
        fi
    done
    if ((${#NOTES[@]})); then
        echo
        echo "Notes:"
        local n
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
    log "done"
}

paired_main "$@"
