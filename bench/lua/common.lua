-- Prepended to every bench script by bench/wrk.py: thread ids, status counts, a JSON summary.
-- Each thread sees `tid` (1..threads); scripts call count(status) in response() and may put
-- numbers into the thread's `extra` table, reported per thread in the summary.
local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

statuses = {}
extra = {}

function count(status)
  statuses[status] = (statuses[status] or 0) + 1
end

local function flat_json(t)
  local parts = {}
  for k, v in pairs(t) do
    table.insert(parts, string.format('"%s":%s', tostring(k), tostring(v)))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local merged, per_thread = {}, {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + n
    end
    table.insert(per_thread, flat_json(thread:get("extra") or {}))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"statuses":%s,"threads":[%s]}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean,
    flat_json(merged), table.concat(per_thread, ",")))
end
