-- PATCH one question with baseVersion = the version of this connection's last response.
-- Run with as many threads as connections: one connection per thread, so "per thread" is
-- "per client". args: token, kit prefix, "own" (kit PREFIX<tid>) or "shared" (kit PREFIX),
-- the kits' version when the run starts.
local FIELDS = {
  { "heightCm", function(n) return tostring(100 + n % 100) end },
  { "weightKg", function(n) return tostring(40 + n % 100) end },
  { "waistCm", function(n) return tostring(50 + n % 100) end },
  { "cigarettesPerDay", function(n) return tostring(n % 100) end },
  { "yearsSmoked", function(n) return tostring(n % 90) end },
  { "drinksPerWeek", function(n) return tostring(n % 100) end },
  { "fastingHours", function(n) return tostring(n % 70) end },
  { "genderIdentity", function(n) return '"g' .. tid .. "-" .. n .. '"' end },
  { "medications", function(n) return '"m' .. tid .. "-" .. n .. '"' end },
  { "otherConditions", function(n) return '"c' .. tid .. "-" .. n .. '"' end },
  { "allergyDetails", function(n) return '"a' .. tid .. "-" .. n .. '"' end },
  { "additionalNotes", function(n) return '"n' .. tid .. "-" .. n .. '"' end },
}
local path, headers, field, version, n

function init(args)
  local kit = args[3] == "shared" and args[2] or (args[2] .. tid)
  path = "/v1/kits/" .. kit .. "/health-information"
  headers = {
    ["Authorization"] = "Bearer " .. args[1],
    ["Content-Type"] = "application/merge-patch+json",
  }
  version = tonumber(args[4])
  field = FIELDS[(tid - 1) % #FIELDS + 1]
  n = 0
end

function request()
  n = n + 1
  local body = string.format('{"answers":{"%s":%s},"baseVersion":%d}', field[1], field[2](n), version)
  return wrk.format("PATCH", path, headers, body)
end

function response(status, headers, body)
  count(status)
  local tag = headers["etag"] or headers["ETag"]
  if tag then
    version = tonumber(tag:match("%d+")) or version
  elseif body then -- 409 edit-conflict names the current version
    local current = tonumber(body:match('"currentVersion":(%d+)'))
    if current and current > version then
      version = current
    end
  end
end
