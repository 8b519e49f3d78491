#!/usr/bin/env bash
# rvs XDP NAT benchmark: small UDP datagrams through a NAT director (two interfaces, the real
# servers on a private network behind it), side by side
#   nat-bare  a bare XDP program on the director: a fixed NAT rewrite toward real server 1
#             (address, port, incremental checksums, MACs) and XDP_REDIRECT to the other
#             interface, and the reverse for replies (the limit of this setup)
#   nft-nat   nftables DNAT with numgen over the three real servers + masquerade toward them,
#             conntrack on (the kernel's NAT)
#   rvs-nat   rvsd --dataplane xdp on both interfaces, a UDP service with rr over three NAT
#             (-m) real servers, port 9000 mapped to 9001
#   proxy     rvsd's default (userspace) data plane, same rules: a UDP proxy
# Two tests per row: one-way (packets per second reaching the real servers, which count and
# drop them) and request/response (the real servers echo every datagram back through the
# director; replies per second counted at the client). Prints two markdown tables on stdout
# (progress on stderr), with the ratios to nft-nat and to proxy. See bench/README.md ("XDP
# NAT").
#
# Environment (all optional; the PPS_ names of bench/xdp-pps.sh):
#   PPS_ROUNDS=3        rounds; every cell is the median of its rounds
#   PPS_SECONDS=5       measured seconds of each row and test in each round (after PPS_WARMUP)
#   PPS_WARMUP=1        seconds of traffic before measuring
#   PPS_FLOWS=256       UDP source ports the generator cycles through (a power of two)
#   PPS_SIZE=60         frame size in bytes (Ethernet header included, FCS not)
#   PPS_ROWS="nat-bare nft-nat rvs-nat proxy"
#   PPS_TESTS="oneway rr"
#   PPS_UDP_CSUM=on     the client's datagrams carry a UDP checksum (off: checksum 0)
#   PPS_SKIP_BUILD=1    use the binaries already built
#   CARGO_TARGET_DIR    where cargo puts them (default: <repo>/target)
#
# Topology (network namespaces made here, removed on exit, also on Ctrl-C):
#   client 10.0.0.100 ── front switch ── pd0 10.0.0.12, VIP 10.0.0.88
#                                          director (forwarding per row)
#   rs1 192.168.10.9 ───┐                pd1 192.168.10.1
#   rs2 192.168.10.20 ──┼── back switch ──┘
#   rs3 192.168.10.21 ──┘  real servers: default route via 192.168.10.1; pps_sink (one-way)
#                          or pps_echo (request/response) on their interface
# Both switches are pps_switch (static tables). The client's interface has pps_sink (counts
# the replies). Every neighbour entry is permanent. The generator and every stage after it run
# on CPU 0 (bench/xdp-pps.sh's pipeline layout); rvsd runs on CPU 1.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

ROUNDS=${PPS_ROUNDS:-3}
SECONDS_MEASURED=${PPS_SECONDS:-5}
WARMUP=${PPS_WARMUP:-1}
FLOWS=${PPS_FLOWS:-256}
SIZE=${PPS_SIZE:-60}
ROWS=${PPS_ROWS:-nat-bare nft-nat rvs-nat proxy}
TESTS=${PPS_TESTS:-oneway rr}
CSUM=${PPS_UDP_CSUM:-on}

VIP=10.0.0.88
VPORT=9000
RPORT=9001
DIR_FRONT=10.0.0.12
CLIENT=10.0.0.100
DIR_BACK=192.168.10.1
RS_IPS=(192.168.10.9 192.168.10.20 192.168.10.21)
MAC_CLIENT=02:00:0a:00:00:64
MAC_FRONT=02:00:0a:00:00:0c
MAC_BACK=02:00:c0:a8:0a:01
RS_MACS=(02:00:c0:a8:0a:09 02:00:c0:a8:0a:14 02:00:c0:a8:0a:15)

# shellcheck source=bench/xdp-lib.sh
. "$BENCH_DIR/xdp-lib.sh"

TAG=nat$$
NS_SW=$TAG-sw NS_SB=$TAG-sb NS_CL=$TAG-cl NS_DIR=$TAG-dir
NS_RS=("$TAG-rs1" "$TAG-rs2" "$TAG-rs3")
NAMESPACES=("$NS_CL" "$NS_DIR" "${NS_RS[@]}" "$NS_SW" "$NS_SB")
RS_PIDS=()

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
        [[ $n =~ ^(nat-bare|nft-nat|rvs-nat|proxy)$ ]] || die "PPS_ROWS: unknown row '$n'"
    done
    for n in $TESTS; do
        [[ $n =~ ^(oneway|rr)$ ]] || die "PPS_TESTS: oneway and/or rr, got '$n'"
    done
    [[ $CSUM =~ ^(on|off)$ ]] || die "PPS_UDP_CSUM: on or off, got '$CSUM'"
    ((SECONDS_MEASURED <= 60 && ROUNDS <= 20)) || die "PPS_SECONDS ≤ 60 and PPS_ROUNDS ≤ 20"
}

# ---------------------------------------------------------------- topology

setup() {
    local i
    make_namespaces
    link "$NS_CL" pc0 "$MAC_CLIENT" ps-c "$NS_SW"
    link "$NS_DIR" pd0 "$MAC_FRONT" ps-d "$NS_SW"
    link "$NS_DIR" pd1 "$MAC_BACK" pb-d "$NS_SB"
    for i in 0 1 2; do
        link "${NS_RS[i]}" "pr$((i + 1))" "${RS_MACS[i]}" "pb-r$((i + 1))" "$NS_SB"
    done
    in_ns "$NS_CL" ip addr add "$CLIENT/24" dev pc0
    in_ns "$NS_CL" ip neigh replace "$DIR_FRONT" lladdr "$MAC_FRONT" dev pc0 nud permanent
    in_ns "$NS_DIR" ip addr add "$DIR_FRONT/24" dev pd0
    in_ns "$NS_DIR" ip addr add "$VIP/32" dev pd0
    in_ns "$NS_DIR" ip addr add "$DIR_BACK/24" dev pd1
    in_ns "$NS_DIR" sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.pd0.rp_filter=0 net.ipv4.conf.pd1.rp_filter=0
    in_ns "$NS_DIR" ip neigh replace "$CLIENT" lladdr "$MAC_CLIENT" dev pd0 nud permanent
    for i in 0 1 2; do
        in_ns "$NS_DIR" ip neigh replace "${RS_IPS[i]}" lladdr "${RS_MACS[i]}" dev pd1 nud permanent
        in_ns "${NS_RS[i]}" ip addr add "${RS_IPS[i]}/24" dev "pr$((i + 1))"
        in_ns "${NS_RS[i]}" ip route add default via "$DIR_BACK"
        in_ns "${NS_RS[i]}" ip neigh replace "$DIR_BACK" lladdr "$MAC_BACK" dev "pr$((i + 1))" nud permanent
    done
    # the counters are pinned in a BPF filesystem of our own
    bpf_fs
    spawn "$NS_SW" "$PKTGEN" switch ps-c="$MAC_CLIENT" ps-d="$MAC_FRONT" --seconds 3600
    spawn "$NS_SB" "$PKTGEN" switch pb-d="$MAC_BACK" pb-r1="${RS_MACS[0]}" pb-r2="${RS_MACS[1]}" \
        pb-r3="${RS_MACS[2]}" --seconds 3600
    spawn "$NS_CL" "$PKTGEN" sink pc0 --pin "$PIN/cl" --seconds 3600
    wait_xdp "$NS_SW" ps-c ps-d || die "the front switch program did not attach (log above)"
    wait_xdp "$NS_SB" pb-d pb-r1 pb-r2 pb-r3 || die "the back switch program did not attach (log above)"
    wait_xdp "$NS_CL" pc0 || die "the client's sink did not attach"
    # the director's ends run NAPI through GRO when no program is attached (see xdp-pps.sh);
    # what the director's own sockets send (proxy) gets its UDP checksum in software: a veth
    # would pass it on unfinished (checksum offload), and an echoed datagram would come back
    # with a wrong checksum
    in_ns "$NS_DIR" ethtool -K pd0 gro on tx off >/dev/null
    in_ns "$NS_DIR" ethtool -K pd1 gro on tx off >/dev/null
}

# The real servers' program: sink (count, drop) or echo (count, send back).
servers() {
    local kind=$1 i pid
    for pid in "${RS_PIDS[@]}"; do
        stop "$pid"
    done
    RS_PIDS=()
    for i in 1 2 3; do
        rm -f "$PIN/rs$i"
        spawn "${NS_RS[i - 1]}" "$PKTGEN" "$kind" "pr$i" --pin "$PIN/rs$i" --seconds 3600
        RS_PIDS+=("$LAST")
    done
    for i in 1 2 3; do
        wait_xdp "${NS_RS[i - 1]}" "pr$i" || die "the $kind program did not attach on rs$i"
    done
}

# ---------------------------------------------------------------- rows

# Each row has row_X_start (set the director up; return 1 to skip the row with $SKIP set) and
# row_X_stop.

row_nat-bare_start() {
    spawn "$NS_DIR" "$PKTGEN" nat pd0 pd1 --vip "$VIP" --vport "$VPORT" --rip "${RS_IPS[0]}" \
        --rport "$RPORT" --front-mac "$MAC_FRONT" --client-mac "$MAC_CLIENT" --back-mac "$MAC_BACK" \
        --rs-mac "${RS_MACS[0]}" --seconds 600
    ROW_PID=$LAST
    wait_xdp "$NS_DIR" pd0 pd1 || { SKIP="the bare NAT program did not attach"; return 1; }
}
row_nat-bare_stop() { stop "$ROW_PID"; }

row_nft-nat_start() {
    in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$NS_DIR" nft -f - <<EOF || { SKIP="nft refused the ruleset"; return 1; }
table ip rvs_nat {
    chain prerouting {
        type nat hook prerouting priority dstnat;
        ip daddr $VIP udp dport $VPORT dnat ip to numgen inc mod 3 map { 0 : ${RS_IPS[0]} . $RPORT, 1 : ${RS_IPS[1]} . $RPORT, 2 : ${RS_IPS[2]} . $RPORT }
    }
    chain postrouting {
        type nat hook postrouting priority srcnat;
        oifname "pd1" masquerade
    }
}
EOF
}
row_nft-nat_stop() {
    in_ns "$NS_DIR" nft delete table ip rvs_nat
    in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=0
}

# The service: rr over the three real servers, masquerading (NAT), port 9000 to 9001.
rules() {
    local i
    rvsadm_in "$NS_DIR" -A -u "$VIP:$VPORT" -s rr || return 1
    for i in 0 1 2; do
        rvsadm_in "$NS_DIR" -a -u "$VIP:$VPORT" -r "${RS_IPS[i]}:$RPORT" -m || return 1
    done
}

row_rvs-nat_start() {
    in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=1
    start_rvsd "$NS_DIR" --dataplane xdp --iface pd0 --iface pd1 || return 1
    rules || { SKIP="rvsadm refused the rules"; stop "$ROW_PID"; return 1; }
    wait_xdp "$NS_DIR" pd0 pd1 ||
        { SKIP="rvsd did not attach XDP to pd0 and pd1"; stop "$ROW_PID"; return 1; }
    in_ns "$NS_DIR" ip -o link show dev pd0 | grep -q ' xdp ' ||
        log "rvs-nat: XDP is not in driver mode on pd0: $(in_ns "$NS_DIR" ip -o link show dev pd0)"
}
row_rvs-nat_stop() {
    log "rvs-nat: program counters: $(rvs_counters)"
    stop "$ROW_PID"
    in_ns "$NS_DIR" sysctl -qw net.ipv4.ip_forward=0
}

row_proxy_start() {
    # one worker: the proxy has CPU 1 to itself (the packets' path is on CPU 0)
    start_rvsd "$NS_DIR" --workers 1 || return 1
    rules || { SKIP="rvsadm refused the rules"; stop "$ROW_PID"; return 1; }
}
row_proxy_stop() { stop "$ROW_PID"; }

# The non-zero counters of the rvs program attached to pd0 (name=value, summed over the
# CPUs; names from rvs_abi.h), or why not.
rvs_counters() {
    if ! command -v bpftool >/dev/null || ! command -v jq >/dev/null; then
        echo "(no bpftool or jq)"
        return
    fi
    local prog map names
    prog=$(in_ns "$NS_DIR" ip -j -d link show dev pd0 | jq -r '.[0].xdp.prog.id // empty')
    [[ -n $prog ]] || { echo "(no program on pd0)"; return; }
    for map in $(bpftool -j prog show id "$prog" | jq -r '.map_ids[]?'); do
        [[ $(bpftool -j map show id "$map" | jq -r .name) == rvs_counters ]] && break
        map=""
    done
    [[ -n $map ]] || { echo "(no rvs_counters map)"; return; }
    names=$(awk '/RVS_C_[A-Z_]+( = 0)?,/ { sub(/^.*RVS_C_/, ""); sub(/[ ,].*/, ""); printf "%s ", tolower($0) }' \
        "$ROOT/crates/rvs-bpf/bpf/rvs_abi.h")
    # the values as numbers are in "formatted" (the map has BTF)
    bpftool -j map dump id "$map" | jq -r --arg names "$names" '($names | split(" ")) as $n
        | [.[] | .formatted // empty | {k: .key, v: ([.values[].value] | add)} | select(.v > 0)
           | "\($n[.k] // .k)=\(.v)"] | join(" ")'
}

# ---------------------------------------------------------------- measuring

# One measurement of the current row: prints "RS_MPPS CL_MPPS RS_OF_SENT ANSWERED PROC RS1 RS2
# RS3": the rate the real servers received and the client's (replies), the percent of the sent
# requests that reached the real servers and that were answered, rvsd's CPU % (or "-"), and
# each real server's share, percent.
measure() {
    local gen c0 c1 p0 p1 proc=-
    local -a a b
    rm -f "$PIN/gen"
    spawn "$NS_CL" taskset -c 0 "$PKTGEN" send pc0 --src-mac "$MAC_CLIENT" --dst-mac "$MAC_FRONT" \
        --src "$CLIENT" --dst "$VIP" --dport "$VPORT" --flows "$FLOWS" --size "$SIZE" \
        --port-base "$PORT_BASE" --udp-csum "$CSUM" --pin "$PIN/gen" \
        --seconds $((WARMUP + SECONDS_MEASURED + 2)) >>"$TMP/gen.log" 2>&1
    gen=$LAST
    sleep "$WARMUP"
    c0=$("$PKTGEN" count "$PIN"/gen "$PIN"/rs1 "$PIN"/rs2 "$PIN"/rs3 "$PIN"/cl) || die "no counters"
    p0=$(ticks "$ROW_PROC")
    sleep "$SECONDS_MEASURED"
    c1=$("$PKTGEN" count "$PIN"/gen "$PIN"/rs1 "$PIN"/rs2 "$PIN"/rs3 "$PIN"/cl) || die "no counters"
    p1=$(ticks "$ROW_PROC")
    kill -0 "$gen" 2>/dev/null || log "the generator ended early: $(tail -n 2 "$TMP/gen.log")"
    stop "$gen"
    read -ra a <<<"$c0"
    read -ra b <<<"$c1"
    [[ -n $ROW_PROC ]] && proc=$(cpu_pct $((p1 - p0)) $((b[0] - a[0])))
    awk -v ns="$((b[0] - a[0]))" -v g="$((b[2] - a[2]))" -v r1="$((b[3] - a[3]))" \
        -v r2="$((b[4] - a[4]))" -v r3="$((b[5] - a[5]))" -v cl="$((b[6] - a[6]))" -v proc="$proc" 'BEGIN {
            r = r1 + r2 + r3; t = (r > 0) ? r : 1; s = (g > 0) ? g : 1
            printf "%.3f %.3f %.1f %.1f %s %.0f %.0f %.0f\n", r / (ns / 1e9) / 1e6, cl / (ns / 1e9) / 1e6,
                100 * r / s, 100 * cl / s, proc, 100 * r1 / t, 100 * r2 / t, 100 * r3 / t
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
    local round row test out key
    local -a f
    RUN_NO=0
    declare -A RES REPLIES OFSENT ANSWERED PROC SHARE SKIPPED
    local -a order
    read -ra order <<<"$ROWS"
    for ((round = 1; round <= ROUNDS; round++)); do
        for test in $TESTS; do
            if [[ $test == oneway ]]; then servers sink; else servers echo; fi
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
                log "round $round $test $row: $out (Mpps at the real servers, at the client," \
                    "% of sent at the real servers, answered, rvsd CPU %, rs1/rs2/rs3 %)"
                read -ra f <<<"$out"
                key=$test/$row
                RES[$key]+="${f[0]} " REPLIES[$key]+="${f[1]} " OFSENT[$key]+="${f[2]} "
                ANSWERED[$key]+="${f[3]} " PROC[$key]+="${f[4]} " SHARE[$key]="${f[5]}/${f[6]}/${f[7]}"
            done
        done
        # the next round starts with the next row, so that none is always first
        order=("${order[@]:1}" "${order[0]}")
    done
    report
}

# The median of the numbers in "$1" ("-" for none).
med() { numbers "$1" | median; }

report() {
    local row m base_nft base_proxy base_bare test cols
    echo "XDP NAT: $SIZE-byte UDP frames (UDP checksum $CSUM), $FLOWS flows, median of $ROUNDS rounds of" \
        "$SECONDS_MEASURED s ($(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r))"
    for test in $TESTS; do
        echo
        base_nft=$(med "${RES[$test/nft-nat]:-}") base_proxy=$(med "${RES[$test/proxy]:-}")
        base_bare=$(med "${RES[$test/nat-bare]:-}")
        if [[ $test == oneway ]]; then
            echo "One way (client → real servers, counted at the real servers):"
            echo
            echo "| row | Mpps | ns per packet | ns above nat-bare | rs1/rs2/rs3 % | of sent % | × nft-nat | × proxy |"
            echo "|---|---:|---:|---:|---|---:|---:|---:|"
        else
            base_nft=$(med "${REPLIES[$test/nft-nat]:-}") base_proxy=$(med "${REPLIES[$test/proxy]:-}")
            base_bare=$(med "${REPLIES[$test/nat-bare]:-}")
            echo "Request/response (real servers echo every datagram; replies counted at the client):"
            echo
            echo "| row | replies Mpps | ns per round trip | ns above nat-bare | requests at real servers Mpps | answered % | × nft-nat | × proxy |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        fi
        for row in $ROWS; do
            if [[ -n ${SKIPPED[$row]:-} ]]; then
                echo "| $row | n/a | | | | | | |"
                continue
            fi
            if [[ $test == oneway ]]; then
                m=$(med "${RES[$test/$row]:-}")
                cols="${SHARE[$test/$row]:--} $(med "${OFSENT[$test/$row]:-}")"
            else
                m=$(med "${REPLIES[$test/$row]:-}")
                cols="$(med "${RES[$test/$row]:-}") $(med "${ANSWERED[$test/$row]:-}")"
            fi
            awk -v row="$row" -v m="$m" -v cols="$cols" -v nft="$base_nft" -v proxy="$base_proxy" \
                -v bare="$base_bare" 'function ratio(a, b) {
                    return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
                BEGIN {
                    split(cols, c, " ")
                    ns = (m + 0 > 0) ? sprintf("%.0f", 1000 / m) : "-"
                    # the proxy works on CPU 1: its 1/rate is no cost on the pipeline CPU
                    above = (ns != "-" && bare + 0 > 0 && row != "proxy") ? sprintf("%+.0f", 1000 / m - 1000 / bare) : "-"
                    printf "| %s | %.3f | %s | %s | %s | %s | %s | %s |\n", row, m, ns, above, c[1], c[2],
                        ratio(m, nft), ratio(m, proxy)
                }'
        done
    done
    for test in $TESTS; do
        for row in rvs-nat proxy; do
            m=$(med "${PROC[$test/$row]:-}")
            [[ $m != - ]] && echo && echo "$test, $row: rvsd used $m % of one CPU (CPU 1) while measured (median)."
        done
    done
    for row in $ROWS; do
        [[ -n ${SKIPPED[$row]:-} ]] && echo && echo "$row skipped: ${SKIPPED[$row]}"
    done
    return 0
}

main "$@"
