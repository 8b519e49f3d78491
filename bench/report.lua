-- wrk script: one machine-readable line with the figures bench/run.sh needs.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d bytes=%d duration_us=%d p99_us=%d p50_us=%d p999_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.bytes, summary.duration, latency:percentile(99),
      latency:percentile(50), latency:percentile(99.9),
      e.connect, e.read, e.write, e.status, e.timeout))
end
