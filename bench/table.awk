#!/usr/bin/awk -f
# Render bench/run.sh's results as one markdown table.
# Input lines (tab-separated): metric  threads  balancer  value
#   threads is "-" for the direct runs (measured once, shown on every threads row);
#   value is a plain number or "n/a".
BEGIN {
    FS = "\t"
    n = split("ka_rps close_rps bulk_mibs p99_ms rss_mib cpu_pct cpu_us_req", order, " ")
    label["ka_rps"] = "keep-alive requests/s (`/`)";    better["ka_rps"] = "hi";    fmt["ka_rps"] = "%.0f"
    label["close_rps"] = "new-connection requests/s";   better["close_rps"] = "hi"; fmt["close_rps"] = "%.0f"
    label["bulk_mibs"] = "1 MiB transfers, MiB/s";      better["bulk_mibs"] = "hi"; fmt["bulk_mibs"] = "%.1f"
    label["p99_ms"] = "p99 latency ms (keep-alive)";    better["p99_ms"] = "lo";    fmt["p99_ms"] = "%.2f"
    label["rss_mib"] = "balancer peak RSS MiB";         better["rss_mib"] = "lo";   fmt["rss_mib"] = "%.1f"
    label["cpu_pct"] = "balancer CPU % of one core (keep-alive)"; better["cpu_pct"] = "lo"; fmt["cpu_pct"] = "%.0f"
    label["cpu_us_req"] = "balancer CPU µs per request (keep-alive)"; better["cpu_us_req"] = "lo"; fmt["cpu_us_req"] = "%.1f"
    nb = split("rvs haproxy nginx direct", bal, " ")
}
{
    v[$1, $2, $3] = $4
    if ($2 != "-" && !($2 in seen)) { seen[$2] = 1; nt++; threads[nt] = $2 }
}
function num(x) { return x != "" && x != "n/a" && x ~ /^[0-9.eE+-]+$/ }
function cell(m, x) { return num(x) ? sprintf(fmt[m], x) : (x == "" ? "—" : x) }
function ratio(a, b) { return (num(a) && num(b) && b + 0 > 0) ? sprintf("%.2f", a / b) : "n/a" }
END {
    # threads in numeric order (few values: insertion sort)
    for (i = 2; i <= nt; i++)
        for (j = i; j > 1 && threads[j - 1] + 0 > threads[j] + 0; j--) {
            t = threads[j]; threads[j] = threads[j - 1]; threads[j - 1] = t
        }
    print "| metric | threads | rvs | haproxy | nginx | direct | rvs/best peer | rvs/direct |"
    print "|---|---:|---:|---:|---:|---:|---:|---:|"
    for (k = 1; k <= n; k++) {
        m = order[k]
        for (i = 1; i <= nt; i++) {
            t = threads[i]
            r = v[m, t, "rvs"]; h = v[m, t, "haproxy"]; g = v[m, t, "nginx"]; d = v[m, "-", "direct"]
            best = ""
            if (num(h)) best = h
            if (num(g) && (best == "" || (better[m] == "hi" ? g + 0 > best + 0 : g + 0 < best + 0))) best = g
            rb = better[m] == "hi" ? ratio(r, best) : ratio(best, r)
            rd = m == "bulk_mibs" ? ratio(r, d) : ""
            printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", label[m], t,
                cell(m, r), cell(m, h), cell(m, g), cell(m, d), rb, rd
        }
    }
}
