-- wrk script for the cluster drill: replays pre-signed requests with
-- deploy/bench/replay.lua (run from the repository's root), and writes one
-- line per answer, "<unix ms> <status> <keyward message id or ->", to
-- DRILL_ACKS.<thread>, so the drill can check every acknowledged message
-- against the database and measure how long no 200 came.
dofile("deploy/bench/replay.lua")

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

local replay_init = init
function init(args)
  replay_init(args)
  acks = io.open(os.getenv("DRILL_ACKS") .. "." .. tid, "w")
  acks:setvbuf("line")
end

function response(status, headers, body)
  local id = body and string.match(body, '"id":"?([0-9]+)') or "-"
  acks:write(now_ms(), " ", status, " ", id, "\n")
end
