#!/usr/bin/awk -f
# Render bench/run.sh's results as one markdown table.
# Input lines (tab-separated): metric  threads  balancer  value
#   threads is "-" for the direct runs (one per round, shown on every threads row);
#   value is a plain number or "n/a".
# A metric measured in several rounds shows the median of its numeric values (n/a when more
# than half of its rounds were n/a).
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
    k = $1 SUBSEP $2 SUBSEP $3
    rounds[k]++
    if (num($4)) { cnt[k]++; val[k, cnt[k]] = $4 + 0 }
    if ($2 != "-" && !($2 in seen)) { seen[$2] = 1; nt++; threads[nt] = $2 }
}
function num(x) { return x != "" && x != "n/a" && x ~ /^[0-9.eE+-]+$/ }
# median of the numeric values recorded under key k ("" when none was recorded)
function median(k,    c, i, j, t, a) {
    if (!(k in rounds)) return ""
    c = cnt[k] + 0
    if (c == 0 || 2 * c < rounds[k]) return "n/a"
    for (i = 1; i <= c; i++) a[i] = val[k, i]
    for (i = 2; i <= c; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
}
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
            r = median(m SUBSEP t SUBSEP "rvs"); h = median(m SUBSEP t SUBSEP "haproxy")
            g = median(m SUBSEP t SUBSEP "nginx"); d = median(m SUBSEP "-" SUBSEP "direct")
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
