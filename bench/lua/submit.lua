-- POST …/submit on kits PREFIX<tid>-1 … PREFIX<tid>-<created>, each once (fresh kits, saved by
-- create.lua). args: token, kit prefix, comma-separated created counts per thread. A thread that
-- runs out stops and reports extra.exhausted = 1: its throughput is then a lower bound.
local prefix, headers, avail, n

function init(args)
  headers = { ["Authorization"] = "Bearer " .. args[1] }
  prefix = "/v1/kits/" .. args[2] .. tid .. "-"
  local counts = {}
  for c in args[3]:gmatch("%d+") do
    table.insert(counts, tonumber(c))
  end
  avail = counts[tid] or 0
  n = 0
  extra.exhausted = 0
end

function request()
  if n >= avail then -- nothing left at all: one harmless request, then stop
    extra.exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/health/live")
  end
  n = n + 1
  return wrk.format("POST", prefix .. n .. "/health-information/submit", headers)
end

function response(status, headers, body)
  if n > avail or extra.exhausted == 1 then
    return
  end
  count(status)
  if n >= avail then
    extra.exhausted = 1
    wrk.thread:stop()
  end
end
