-- POST /app/insert with a fresh random valid ticket per request: six distinct integers in
-- 1..=60. Give wrk the insert URL itself:
--
--   wrk -t1 -c64 -d10s --latency -s benches/wrk/insert.lua http://127.0.0.1:3000/app/insert
--
-- Prints the LOADLAB_RESULT line of report.lua, with count_201: the inserts the server
-- acknowledged, which the harness compares with the rows it finds afterwards.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
count_responses()

local headers = { ["Content-Type"] = "application/json" }
local pool = {}

function init(args)
  -- thread_id is set by setup() before init() runs; distinct seeds per thread so two
  -- threads do not send the same sequence.
  math.randomseed(os.time() * 1009 + (thread_id or 1) * 7919)
  for i = 1, 60 do
    pool[i] = i
  end
end

-- Six distinct numbers: a partial Fisher-Yates shuffle of 1..60, the first six slots.
function random_ticket_body()
  for i = 1, 6 do
    local j = math.random(i, 60)
    pool[i], pool[j] = pool[j], pool[i]
  end
  return string.format('{"num1":%d,"num2":%d,"num3":%d,"num4":%d,"num5":%d,"num6":%d}',
    pool[1], pool[2], pool[3], pool[4], pool[5], pool[6])
end

function request()
  return wrk.format("POST", nil, headers, random_ticket_body())
end
