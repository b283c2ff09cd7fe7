-- Shared by every loadtest scenario (benches/loadtest): numbers the wrk threads and, when
-- wrk is done, prints one machine-readable line that the harness parses:
--
--   LOADLAB_RESULT {"requests":..,"p50_us":..,...}
--
-- Alone it measures plain GETs without slowing wrk down (no request() or response()
-- callback, so wrk keeps its static request):
--
--   wrk -t1 -c64 -d10s --latency -s benches/wrk/report.lua http://127.0.0.1:3000/healthz
--
-- Scenario scripts load it with dofile() and call count_responses() to also count 2xx,
-- non-2xx and 201 (an acknowledged insert: only POST /app/insert answers 201).

-- The threads wrk created, in the main Lua state only: setup() and done() run there,
-- while request() and response() run in each thread's own state, so per-thread counters
-- are read back with thread:get() at the end.
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

-- Installs a response() callback that counts statuses in this thread's globals. It makes
-- wrk parse every response, so only scripts that need the counts call it.
function count_responses()
  count_2xx, count_non2xx, count_201 = 0, 0, 0
  function response(status, headers, body)
    if status >= 200 and status < 300 then
      count_2xx = count_2xx + 1
      if status == 201 then
        count_201 = count_201 + 1
      end
    else
      count_non2xx = count_non2xx + 1
    end
  end
end

local function num(x)
  if x == nil then
    return "null"
  end
  return string.format("%.0f", x)
end

function done(summary, latency, requests)
  local counted, ok, non2xx, created = false, 0, 0, 0
  for _, t in ipairs(threads) do
    local n = t:get("count_2xx")
    if n ~= nil then
      counted = true
      ok = ok + n
      non2xx = non2xx + t:get("count_non2xx")
      created = created + t:get("count_201")
    end
  end
  local e = summary.errors
  io.write("LOADLAB_RESULT {",
    '"requests":', num(summary.requests),
    ',"duration_us":', num(summary.duration),
    ',"bytes":', num(summary.bytes),
    ',"connect":', num(e.connect),
    ',"read":', num(e.read),
    ',"write":', num(e.write),
    ',"timeout":', num(e.timeout),
    ',"status":', num(e.status),
    ',"p50_us":', num(latency:percentile(50)),
    ',"p90_us":', num(latency:percentile(90)),
    ',"p99_us":', num(latency:percentile(99)),
    ',"p999_us":', num(latency:percentile(99.9)),
    ',"max_us":', num(latency.max),
    ',"mean_us":', num(latency.mean),
    ',"count_2xx":', counted and num(ok) or "null",
    ',"count_non2xx":', counted and num(non2xx) or "null",
    ',"count_201":', counted and num(created) or "null",
    "}\n")
end
