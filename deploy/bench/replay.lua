-- wrk script: replays pre-signed requests (gen_requests.py), each wrk
-- thread taking its own slice so that every gateway id is sent once.
-- BENCH_FILE names the file, BENCH_PATH the webhook path.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  local path = os.getenv("BENCH_PATH")
  requests = {}
  local i = 0
  for line in io.lines(os.getenv("BENCH_FILE")) do
    if i % nthreads == tid then
      local fields = {}
      for field in string.gmatch(line, "[^\t]+") do
        table.insert(fields, field)
      end
      local headers = {}
      for h = 1, #fields - 1, 2 do
        headers[fields[h]] = fields[h + 1]
      end
      table.insert(requests, wrk.format("POST", path, headers, fields[#fields]))
    end
    i = i + 1
  end
  next_request = 0
  exhausted = 0
end

function request()
  next_request = next_request + 1
  local r = requests[next_request]
  if r == nil then
    -- Out of unique requests: a cheap probe, counted apart in the report.
    exhausted = exhausted + 1
    return wrk.format("GET", "/healthz")
  end
  return r
end

function done(summary, latency, requests)
  local exhausted = 0
  for _, t in ipairs(threads) do
    exhausted = exhausted + (t:get("exhausted") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d non2xx=%d socket_errors=%d duration_us=%d p50_us=%d p99_us=%d exhausted=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), exhausted))
end
