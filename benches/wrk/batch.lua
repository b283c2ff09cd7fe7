-- POST /app/insert/batch with 1,000 random valid tickets per request (one transaction
-- each on the server). Rows per second = requests per second x 1,000:
--
--   wrk -t1 -c8 -d5s --latency -s benches/wrk/batch.lua http://127.0.0.1:3000/app/insert/batch
--
-- wrk's own "Non-2xx or 3xx responses" line counts refusals. The bodies are built once
-- per thread (16 different ones, sent in turn): building a 60 KB body per request would
-- measure Lua, not loadlab.

local headers = { ["Content-Type"] = "application/json" }
local TICKETS = 1000
local bodies = {}
local turn = 0

function init(args)
  math.randomseed(os.time() * 1009 + (thread_id or 1) * 7919)
  local pool = {}
  for i = 1, 60 do
    pool[i] = i
  end
  for b = 1, 16 do
    local tickets = {}
    for t = 1, TICKETS do
      for i = 1, 6 do
        local j = math.random(i, 60)
        pool[i], pool[j] = pool[j], pool[i]
      end
      tickets[t] = string.format('{"num1":%d,"num2":%d,"num3":%d,"num4":%d,"num5":%d,"num6":%d}',
        pool[1], pool[2], pool[3], pool[4], pool[5], pool[6])
    end
    bodies[b] = "[" .. table.concat(tickets, ",") .. "]"
  end
end

function request()
  turn = turn % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[turn])
end

