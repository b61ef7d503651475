-- One wrk load profile, configured by environment variables (wrk has no script arguments
-- that survive its threads): BENCH_PATH (a path, or a prefix when BENCH_POOL > 1),
-- BENCH_POOL (cycle BENCH_PATH .. "/" .. i over that many pages), BENCH_AUTH (a bearer token),
-- BENCH_BODY_FILE (POST this file as JSON). done() prints one JSON line for the runner.

local path = os.getenv("BENCH_PATH") or "/"
local pool = tonumber(os.getenv("BENCH_POOL") or "1")
local auth = os.getenv("BENCH_AUTH") or ""
local body_file = os.getenv("BENCH_BODY_FILE") or ""
local counter = 0
local thread_offset = 0

wrk.headers["Accept"] = "application/json"
if auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
if body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function init(args)
  thread_offset = math.random(0, 1000000)
end

request = function()
  if pool > 1 then
    counter = counter + 1
    return wrk.format(nil, path .. "/" .. ((counter + thread_offset) % pool))
  end
  return wrk.format(nil, path)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,' ..
    '"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
