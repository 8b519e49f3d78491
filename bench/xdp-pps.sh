#!/usr/bin/env bash
# rvs XDP packets-per-second benchmark: small UDP packets forwarded by a director, side by side
#   bare     a bare XDP program on the director: rewrite MACs toward one real server, XDP_TX
#            (the limit of this setup)
#   forward  plain kernel forwarding (ip_forward=1, no nftables, no conntrack) to one real server
#   nft      nftables DNAT with numgen over three real servers (kube-proxy's nftables way),
#            conntrack on
#   rvs      rvsd --dataplane xdp, a UDP service with rr over three direct-routing real servers
# Prints one markdown table on stdout (progress on stderr): packets per second received by the
# real servers (median of the rounds), ns per packet, the ratios to nft and to bare. See
# bench/README.md for the rows, the generator, the counting and the layouts.
#
# Environment (all optional):
#   PPS_ROUNDS=3        rounds; every cell is the median of its rounds
#   PPS_SECONDS=5       measured seconds of each row in each round (after PPS_WARMUP)
#   PPS_WARMUP=1        seconds of traffic before measuring
#   PPS_FLOWS=256       UDP source ports the generator cycles through (a power of two)
#   PPS_SIZE=60         frame size in bytes (Ethernet header included, FCS not)
#   PPS_ROWS="bare forward nft rvs"
#   PPS_LAYOUT=pipeline where the work runs (see bench/README.md):
#                       pipeline: the kernel's defaults (NAPI in softirq); the generator is
#                         pinned to CPU 0 and every stage of a packet's trip (switch, director,
#                         switch, real server) runs there after it, so 1/rate is the trip's
#                         cost and a row's cost above bare's is what its director adds
#                       split: the director's NAPI in a kernel thread pinned to CPU 1 (its CPU
#                         time measured), everything else on CPU 0
#   PPS_SKIP_BUILD=1    use the binaries already built
#   CARGO_TARGET_DIR    where cargo puts them (default: <repo>/target)
#
# Topology (network namespaces made here, removed on exit, also on Ctrl-C):
#   client 10.0.0.100 ─┐
#   director 10.0.0.12 ─┼─ switch namespace (an XDP switch with a static table, pps_switch)
#   VIP 10.0.0.88      │
#   rs1 10.0.0.9 ──────┤  real servers: VIP on lo, arp_ignore=1, arp_announce=2 (DR)
#   rs2 10.0.0.20 ─────┤  each counts and drops IPv4 in XDP (pps_sink)
#   rs3 10.0.0.21 ─────┘
#
# veth and XDP: a frame sent with XDP_TX or XDP_REDIRECT into a veth is dropped unless the
# receiving end runs NAPI, that is has an XDP program attached or GRO enabled (kernel 5.13+).
# The switch ports and the real servers have programs; the client's and the director's ends
# get GRO (the director's for the rows without a program). Every program is attached in
# native (driver) mode, which veth has.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

ROUNDS=${PPS_ROUNDS:-3}
SECONDS_MEASURED=${PPS_SECONDS:-5}
WARMUP=${PPS_WARMUP:-1}
FLOWS=${PPS_FLOWS:-256}
SIZE=${PPS_SIZE:-60}
ROWS=${PPS_ROWS:-bare forward nft rvs}
LAYOUT=${PPS_LAYOUT:-pipeline}

VIP=10.0.0.88
VPORT=9000
DIRECTOR=10.0.0.12
CLIENT=10.0.0.100
RS_IPS=(10.0.0.9 10.0.0.20 10.0.0.21)
ROUTED=10.0.1.1 # forward row: a non-local address routed via rs1
MAC_CLIENT=02:00:0a:00:00:64
MAC_DIR=02:00:0a:00:00:0c
RS_MACS=(02:00:0a:00:00:09 02:00:0a:00:00:14 02:00:0a:00:00:15)

# shellcheck source=bench/xdp-lib.sh
. "$BENCH_DIR/xdp-lib.sh"

TAG=pps$$
NS_SW=$TAG-sw NS_CL=$TAG-cl NS_DIR=$TAG-dir
NS_RS=("$TAG-rs1" "$TAG-rs2" "$TAG-rs3")
NAMESPACES=("$NS_SW" "$NS_CL" "$NS_DIR" "${NS_RS[@]}")

check_args() {
    local n
    for n in ROUNDS SECONDS_MEASURED SIZE; do
        [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, got '${!n}'"
    done
    [[ $WARMUP =~ ^[0-9]+$ ]] || die "PPS_WARMUP must be a whole number, got '$WARMUP'"
    if ! [[ $FLOWS =~ ^[1-9][0-9]*$ ]] || ((FLOWS > 16384 || (FLOWS & (FLOWS - 1)) != 0)); then
        die "PPS_FLOWS must be a power of two up to 16384, got '$FLOWS'"
    fi
    for n in $ROWS; do
        [[ $n =~ ^(bare|forward|nft|rvs)$ ]] || die "PPS_ROWS: unknown row '$n'"
    done
    [[ $LAYOUT =~ ^(pipeline|split)$ ]] || die "PPS_LAYOUT: pipeline or split, got '$LAYOUT'"
    ((SECONDS_MEASURED <= 60 && ROUNDS <= 20)) || die "PPS_SECONDS ≤ 60 and PPS_ROUNDS ≤ 20"
}

# ---------------------------------------------------------------- topology

setup() {
    local i
    make_namespaces
    link "$NS_CL" pc0 "$MAC_CLIENT" ps-c "$NS_SW"
    link "$NS_DIR" pd0 "$MAC_DIR" ps-d "$NS_SW"
    for i in 0 1 2; do
        link "${NS_RS[i]}" "pr$((i + 1))" "${RS_MACS[i]}" "ps-r$((i + 1))" "$NS_SW"
    done
    in_ns "$NS_CL" ip addr add "$CLIENT/24" dev pc0
    in_ns "$NS_DIR" ip addr add "$DIRECTOR/24" dev pd0
    in_ns "$NS_DIR" ip addr add "$VIP/32" dev pd0
    in_ns "$NS_DIR" sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.pd0.send_redirects=0 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.pd0.rp_filter=0
    for i in 0 1 2; do
        in_ns "$NS_DIR" ip neigh replace "${RS_IPS[i]}" lladdr "${RS_MACS[i]}" dev pd0 nud permanent
        in_ns "${NS_RS[i]}" ip addr add "${RS_IPS[i]}/24" dev "pr$((i + 1))"
        in_ns "${NS_RS[i]}" ip addr add "$VIP/32" dev lo
        in_ns "${NS_RS[i]}" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    done
    in_ns "$NS_CL" ip neigh replace "$DIRECTOR" lladdr "$MAC_DIR" dev pc0 nud permanent
    in_ns "$NS_DIR" ip route add "${ROUTED%.*}.0/24" via "${RS_IPS[0]}" dev pd0
    # the sinks' counters are pinned in a BPF filesystem of our own
    bpf_fs
    # the switch knows every port's address from the start (the real servers never send)
    spawn "$NS_SW" "$PKTGEN" switch ps-c="$MAC_CLIENT" ps-d="$MAC_DIR" ps-r1="${RS_MACS[0]}" \
        ps-r2="${RS_MACS[1]}" ps-r3="${RS_MACS[2]}" --seconds 3600
    for i in 0 1 2; do
        spawn "${NS_RS[i]}" "$PKTGEN" sink "pr$((i + 1))" --pin "$PIN/rs$((i + 1))" --seconds 3600
    done
    wait_xdp "$NS_SW" ps-r3 || die "the switch program did not attach (log above)"
    for i in 1 2 3; do
        wait_xdp "${NS_RS[i - 1]}" "pr$i" || die "the sink program did not attach on rs$i"
    done
    # the receiving ends without a program run NAPI through GRO (see the header)
    in_ns "$NS_CL" ethtool -K pc0 gro on >/dev/null
    in_ns "$NS_DIR" ethtool -K pd0 gro on >/dev/null
    pin_cpus
}

# PPS_LAYOUT=split: the director's NAPI in a thread of its own on CPU 1 (its CPU time is then
# measurable), and the switch port toward the director in one on CPU 0, so that what the
# director sends is not processed on the director's CPU; the generator runs on CPU 0.
# PPS_LAYOUT=pipeline: nothing to do (NAPI runs in softirq on the CPU that scheduled it, which
# is the generator's for every stage).
pin_cpus() {
    DIR_TID=""
    [[ $LAYOUT == split ]] || return 0
    (($(nproc) >= 2)) || die "PPS_LAYOUT=split needs two CPUs"
    in_ns "$NS_DIR" sh -c 'echo 1 > /sys/class/net/pd0/threaded' || die "threaded NAPI on pd0"
    in_ns "$NS_SW" sh -c 'echo 1 > /sys/class/net/ps-d/threaded' || die "threaded NAPI on ps-d"
    DIR_TID=$(napi_thread pd0) || die "no NAPI thread for pd0"
    taskset -pc 1 "$DIR_TID" >/dev/null
    taskset -pc 0 "$(napi_thread ps-d)" >/dev/null || die "no NAPI thread for ps-d"
}

# The kernel thread running interface $1's NAPI (the first, veth has one per queue).
napi_thread() {
    local t
    for t in /proc/[0-9]*; do
        [[ $(cat "$t/comm" 2>/dev/null) == napi/"$1"-* ]] && { echo "${t#/proc/}"; return 0; }
    done
    return 1
}

# ---------------------------------------------------------------- rows

# Each row has row_X_start (set the director up; return 1 to skip the row with $SKIP set) and
# row_X_stop; the generator's destination is $GEN_DST.

row_bare_start() {
    GEN_DST=$VIP
    spawn "$NS_DIR" "$PKTGEN" bare pd0 --src-mac "$MAC_DIR" --dst-mac "${RS_MACS[0]}" --seconds 600
    ROW_PID=$LAST
    wait_xdp "$NS_DIR" pd0 || { SKIP="the bare program did not attach"; return 1; }
}
row_bare_stop() { stop "$ROW_PID"; }

row_forward_start() {
    GEN_DST=$ROUTED
    in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=1
}
row_forward_stop() { in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=0; }

row_nft_start() {
    GEN_DST=$VIP
    in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$NS_DIR" nft -f - <<EOF || { SKIP="nft refused the ruleset"; return 1; }
table ip rvs_pps {
    chain prerouting {
        type nat hook prerouting priority dstnat;
        ip daddr $VIP udp dport $VPORT dnat to numgen inc mod 3 map { 0 : ${RS_IPS[0]}, 1 : ${RS_IPS[1]}, 2 : ${RS_IPS[2]} }
    }
}
EOF
}
row_nft_stop() {
    in_ns "$NS_DIR" nft delete table ip rvs_pps
    in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=0
}

row_rvs_start() {
    local i
    GEN_DST=$VIP
    # the control plane on CPU 1, off the packets' CPU in the pipeline layout (its CPU time is
    # reported apart); in the split layout CPU 1 is the director's
    start_rvsd "$NS_DIR" --dataplane xdp --iface pd0 || return 1
    {
        rvsadm_in "$NS_DIR" -A -u "$VIP:$VPORT" -s rr &&
            for i in 0 1 2; do
                rvsadm_in "$NS_DIR" -a -u "$VIP:$VPORT" -r "${RS_IPS[i]}:$VPORT" -g || return 1
            done
    } || { SKIP="rvsadm refused the rules"; stop "$ROW_PID"; return 1; }
    wait_xdp "$NS_DIR" pd0 || { SKIP="rvsd did not attach XDP to pd0"; stop "$ROW_PID"; return 1; }
}
row_rvs_stop() { stop "$ROW_PID"; }

# ---------------------------------------------------------------- measuring

# One measurement of the current row: prints "MPPS NAPI% PROC% RS1 RS2 RS3": NAPI% the
# director's NAPI thread's CPU (PPS_LAYOUT=split, else "-"), PROC% the row's own process's
# (rvsd, else "-"), RSn the share of the packets each real server received, percent.
measure() {
    local gen c0 c1 n0 n1 p0 p1 napi=- proc=-
    local -a a b
    spawn "$NS_CL" taskset -c 0 "$PKTGEN" send pc0 --src-mac "$MAC_CLIENT" --dst-mac "$MAC_DIR" \
        --src "$CLIENT" --dst "$GEN_DST" --dport "$VPORT" --flows "$FLOWS" --size "$SIZE" \
        --port-base "$PORT_BASE" --seconds $((WARMUP + SECONDS_MEASURED + 2)) >>"$TMP/gen.log" 2>&1
    gen=$LAST
    sleep "$WARMUP"
    c0=$("$PKTGEN" count "$PIN"/rs1 "$PIN"/rs2 "$PIN"/rs3)
    n0=$(ticks "$DIR_TID") p0=$(ticks "$ROW_PROC")
    sleep "$SECONDS_MEASURED"
    c1=$("$PKTGEN" count "$PIN"/rs1 "$PIN"/rs2 "$PIN"/rs3)
    n1=$(ticks "$DIR_TID") p1=$(ticks "$ROW_PROC")
    kill -0 "$gen" 2>/dev/null || log "the generator ended early: $(tail -n 2 "$TMP/gen.log")"
    stop "$gen"
    read -ra a <<<"$c0"
    read -ra b <<<"$c1"
    [[ -n $DIR_TID ]] && napi=$(cpu_pct $((n1 - n0)) $((b[0] - a[0])))
    [[ -n $ROW_PROC ]] && proc=$(cpu_pct $((p1 - p0)) $((b[0] - a[0])))
    awk -v ns="$((b[0] - a[0]))" -v n="$((b[1] - a[1]))" -v r1="$((b[2] - a[2]))" \
        -v r2="$((b[3] - a[3]))" -v r3="$((b[4] - a[4]))" -v napi="$napi" -v proc="$proc" 'BEGIN {
            t = (n > 0) ? n : 1
            printf "%.3f %s %s %.0f %.0f %.0f\n", n / (ns / 1e9) / 1e6, napi, proc, 100*r1/t, 100*r2/t, 100*r3/t
        }'
}

# ---------------------------------------------------------------- main

main() {
    check_args
    [[ $(id -u) == 0 ]] || die "run as root (network namespaces, XDP)"
    install_tools
    build
    start_work
    setup
    local round row out
    RUN_NO=0
    declare -A RES CPU PROC SHARE SKIPPED
    local -a order
    read -ra order <<<"$ROWS"
    for ((round = 1; round <= ROUNDS; round++)); do
        for row in "${order[@]}"; do
            [[ -n ${SKIPPED[$row]:-} ]] && continue
            SKIP="" ROW_PID="" ROW_PROC=""
            if ! "row_${row}_start"; then
                SKIPPED[$row]=$SKIP
                log "$row: skipped: $SKIP"
                continue
            fi
            # new flows for every measurement: source ports not used before in this run
            PORT_BASE=$((10000 + RUN_NO * FLOWS % (55000 - FLOWS)))
            RUN_NO=$((RUN_NO + 1))
            out=$(measure)
            "row_${row}_stop"
            log "round $round $row: $out (Mpps, director NAPI CPU %, rvsd CPU %, rs1/rs2/rs3 share %)"
            RES[$row]+="${out%% *} "
            CPU[$row]+="$(cut -d' ' -f2 <<<"$out") "
            PROC[$row]+="$(cut -d' ' -f3 <<<"$out") "
            SHARE[$row]=$(cut -d' ' -f4- <<<"$out" | tr ' ' /)
        done
        # the next round starts with the next row, so that none is always first
        order=("${order[@]:1}" "${order[0]}")
    done
    report
}

report() {
    local row m c base_nft base_bare
    declare -A MED
    for row in $ROWS; do
        MED[$row]=$(numbers "${RES[$row]:-}" | median)
    done
    base_nft=${MED[nft]:--}
    base_bare=${MED[bare]:--}
    echo "XDP packets per second: $SIZE-byte UDP frames, $FLOWS flows, median of $ROUNDS rounds of" \
        "$SECONDS_MEASURED s, layout $LAYOUT ($(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r))"
    echo
    # pipeline: the director's cost is the cost above bare; split: its NAPI thread's CPU
    if [[ $LAYOUT == pipeline ]]; then
        echo "| row | Mpps | ns per packet | ns above bare | rs1/rs2/rs3 % | × nft | × bare |"
    else
        echo "| row | Mpps | ns per packet | director CPU % | rs1/rs2/rs3 % | × nft | × bare |"
    fi
    echo "|---|---:|---:|---:|---|---:|---:|"
    for row in $ROWS; do
        m=${MED[$row]}
        if [[ -n ${SKIPPED[$row]:-} ]]; then
            echo "| $row | n/a | | | | | |"
            continue
        fi
        c=$(numbers "${CPU[$row]:-}" | median)
        awk -v row="$row" -v m="$m" -v c="$c" -v sh="${SHARE[$row]}" -v nft="$base_nft" \
            -v bare="$base_bare" -v layout="$LAYOUT" 'function ratio(a, b) {
                return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
            BEGIN {
                ns = (m + 0 > 0) ? sprintf("%.0f", 1000 / m) : "-"
                if (layout == "pipeline")
                    dir = (ns != "-" && bare + 0 > 0) ? sprintf("%+.0f", 1000 / m - 1000 / bare) : "-"
                else
                    dir = (c == "-") ? "-" : sprintf("%.0f", c)
                printf "| %s | %.3f | %s | %s | %s | %s | %s |\n", row, m, ns, dir, sh, ratio(m, nft), ratio(m, bare)
            }'
    done
    c=$(numbers "${PROC[rvs]:-}" | median)
    [[ $c != - ]] && echo && echo "rvsd's own process (the control plane: events, counters, on CPU 1)" \
        "used $c % of one CPU while rvs was measured (median)."
    for row in $ROWS; do
        [[ -n ${SKIPPED[$row]:-} ]] && echo && echo "$row skipped: ${SKIPPED[$row]}"
    done
    return 0
}

main "$@"
