-- PUT complete (in-progress) answers on fresh kits PREFIX<tid>-1, -2, …: the first save of a kit.
-- One connection per thread; extra.created counts the kits this thread created in order, so
-- submit.lua can submit exactly those. args: token, kit prefix, the answers body (JSON).
local prefix, headers, body, n, broken

function init(args)
  headers = { ["Authorization"] = "Bearer " .. args[1], ["Content-Type"] = "application/json" }
  prefix = "/v1/kits/" .. args[2] .. tid .. "-"
  body = args[3]
  n = 0
  broken = false
  extra.created = 0
end

function request()
  n = n + 1
  return wrk.format("PUT", prefix .. n .. "/health-information", headers, body)
end

function response(status, headers, body)
  count(status)
  if status == 201 and not broken then
    extra.created = extra.created + 1
  else
    broken = true
  end
end
