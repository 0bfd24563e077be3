-- GET a kit's health information, cycling over kits PREFIX1..PREFIX<n>.
-- args: token, kit prefix, number of kits
local reqs, i = {}, 0

function init(args)
  local headers = { ["Authorization"] = "Bearer " .. args[1] }
  for k = 1, tonumber(args[3]) do
    reqs[k] = wrk.format("GET", "/v1/kits/" .. args[2] .. k .. "/health-information", headers)
  end
  i = (tid - 1) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

function response(status, headers, body)
  count(status)
end
