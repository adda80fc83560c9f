-- wrk script for the intake bench: POST a GitLab Pipeline Hook with a unique Idempotency-Key
-- per request, and print a machine-readable summary line.
-- Usage: wrk ... -s post.lua URL -- BODY_FILE TOKEN KEY_PREFIX EVENT
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a")
  f:close()
  prefix = args[3] .. "-t" .. tostring(tid) .. "-"
  counter = 0
  headers = {
    ["Content-Type"] = "application/json",
    ["X-Gitlab-Event"] = args[4] or "Pipeline Hook",
    ["X-Gitlab-Token"] = args[2],
    ["User-Agent"] = "GitLab/17.11.0",
  }
end

function request()
  counter = counter + 1
  headers["Idempotency-Key"] = prefix .. counter
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "err_connect": %d, "err_read": %d, ' ..
    '"err_write": %d, "err_status": %d, "err_timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
