-- wrk script: one machine-readable line with the figures bench/run.sh needs.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d bytes=%d duration_us=%d p99_us=%d p50_us=%d p999_us=%d mean_us=%d p5_us=%d p25_us=%d p75_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.bytes, summary.duration, latency:percentile(99),
      latency:percentile(50), latency:percentile(99.9), latency.mean, latency:percentile(5),
      latency:percentile(25), latency:percentile(75),
      e.connect, e.read, e.write, e.status, e.timeout))
end
