-- wrk script for benches/load/run.sh: POSTs one body to every request.
-- Arguments after `--`: the body file and its Content-Type value.
-- At the end, prints one `RESULT` line with the figures that run.sh reads.

function init(args)
   local file = assert(io.open(args[1], "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   wrk.headers["Content-Type"] = args[2]
end

-- wrk counts a response as a status error when its status is 400 or more.
-- The login and floor routes send no 1xx or 3xx, so that is every non-2xx.
function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d non_2xx=%d socket_errors=%d p50_us=%d p99_us=%d\n",
      summary.requests,
      summary.duration,
      errors.status,
      errors.connect + errors.read + errors.write + errors.timeout,
      latency:percentile(50),
      latency:percentile(99)))
end
