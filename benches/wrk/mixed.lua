-- A mixed load in a fixed, repeating pattern of 20 requests per connection cycle:
-- 12 GET /healthz, 5 POST /app/insert (random valid tickets), 3 GET /api/randoms?cant=1000.
-- Give wrk the service's base URL:
--
--   wrk -t1 -c64 -d10s --latency -s benches/wrk/mixed.lua http://127.0.0.1:3000
--
-- Prints the LOADLAB_RESULT line of report.lua, with count_201: the acknowledged inserts.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "insert.lua")

-- H: healthz, I: insert, R: randoms. A fixed pattern rather than random draws, so every
-- run sends exactly the same proportions.
local pattern = "HIHRHIHHIHRHIHHIHRHH"
local healthz, randoms, insert_path
local step = 0

local insert_init = init
function init(args)
  insert_init(args)
  local prefix = wrk.path:gsub("/+$", "")
  healthz = wrk.format("GET", prefix .. "/healthz")
  randoms = wrk.format("GET", prefix .. "/api/randoms?cant=1000")
  insert_path = prefix .. "/app/insert"
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  step = step % #pattern + 1
  local kind = pattern:sub(step, step)
  if kind == "H" then
    return healthz
  elseif kind == "R" then
    return randoms
  end
  return wrk.format("POST", insert_path, headers, random_ticket_body())
end
