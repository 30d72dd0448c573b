-- wrk script for the cluster drill: replays pre-signed requests like
-- deploy/bench/replay.lua, and writes one line per answer,
-- "<unix ms> <status> <keyward message id or ->", to DRILL_ACKS.<thread>,
-- so the drill can check every acknowledged message against the database
-- and measure how long no 200 came.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } drill_timespec;
int clock_gettime(int clk_id, drill_timespec *tp);
]]
local ts = ffi.new("drill_timespec")
local function now_ms()
  ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME
  return tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1000000)
end

local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
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
  acks = io.open(os.getenv("DRILL_ACKS") .. "." .. tid, "w")
  acks:setvbuf("line")
end

function request()
  next_request = next_request + 1
  return requests[next_request] or wrk.format("GET", "/healthz")
end

function response(status, headers, body)
  local id = body and string.match(body, '"id":"?([0-9]+)') or "-"
  acks:write(now_ms(), " ", status, " ", id, "\n")
end
