-- wrk's report as crew-bench figures, one `name value unit` per line.
-- Every side of the HTTP benchmarks (crew, Node, nginx) runs wrk with this script.
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("req_per_s %.0f per_s\n", summary.requests / seconds))
  io.write(string.format("latency_p50 %.0f us\n", latency:percentile(50)))
  io.write(string.format("latency_p99 %.0f us\n", latency:percentile(99)))
  io.write(string.format("failed %d requests\n", e.connect + e.read + e.write + e.timeout + e.status))
end
