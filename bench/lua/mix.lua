-- A read-heavy mix: 19 GETs over kits PREFIX1..PREFIX<n> for every PATCH (5 % writes, last
-- writer wins) of this thread's own kit PREFIX<tid>. args: token, kit prefix, number of kits.
local reads, patch_path, headers, n, nkits

function init(args)
  local auth = { ["Authorization"] = "Bearer " .. args[1] }
  nkits = tonumber(args[3])
  reads = {}
  for k = 1, nkits do
    reads[k] = wrk.format("GET", "/v1/kits/" .. args[2] .. k .. "/health-information", auth)
  end
  patch_path = "/v1/kits/" .. args[2] .. tid .. "/health-information"
  headers = {
    ["Authorization"] = "Bearer " .. args[1],
    ["Content-Type"] = "application/merge-patch+json",
  }
  n = 0
end

function request()
  n = n + 1
  if n % 20 == 0 then
    local body = string.format('{"answers":{"heightCm":%d}}', 100 + n % 100)
    return wrk.format("PATCH", patch_path, headers, body)
  end
  return reads[(n + tid) % nkits + 1]
end

function response(status, headers, body)
  count(status)
end
