-- wrk script for thread-weaver commands (and the bare baseline, which takes the same bodies).
-- Every request body is unique (a per-run tag plus a counter).
--   wrk ... -s commands.lua URL -- MODE TAG [IDS_FILE] [STOP_AFTER] [DELAY_MS]
-- MODE: create   POST /v1/threads/create
--       post     POST /v1/threads/{id}/messages/add, round-robin over the ids in IDS_FILE
-- STOP_AFTER > 0: stop after that many responses (seeding); DELAY_MS > 0: pause per request
-- (a bounded, steady background load). done() prints one JSON line with the percentiles.
local mode, tag, ids, stop_after, delay_ms = "create", "t", {}, 0, 0
local counter, responses, index = 0, 0, 0
local account = "01H8XGJWBWBAQ4Z4G2V6K8M3PJ"
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  mode = args[1] or "create"
  tag = args[2] or "t"
  if args[3] and args[3] ~= "-" then
    for line in io.lines(args[3]) do
      if #line > 0 then ids[#ids + 1] = line end
    end
  end
  stop_after = tonumber(args[4] or "0")
  delay_ms = tonumber(args[5] or "0")
  if mode == "post" and #ids == 0 then error("post needs an ids file") end
  if stop_after > 0 then
    response = function(status, hdrs, body)
      responses = responses + 1
      if responses >= stop_after then wrk.thread:stop() end
    end
  end
  if delay_ms > 0 then
    delay = function() return delay_ms end
  end
end

function request()
  counter = counter + 1
  local at = 1700000000000 + counter
  if mode == "create" then
    return wrk.format("POST", "/v1/threads/create", headers,
      '{"accountId":"' .. account .. '","title":"bench ' .. tag .. ' ' .. counter ..
      '","remarks":null,"parentThreadId":null,"administratorIds":["' .. account ..
      '"],"memberIds":[],"createAt":' .. at .. '}')
  end
  index = index % #ids + 1
  return wrk.format("POST", "/v1/threads/" .. ids[index] .. "/messages/add", headers,
    '{"accountId":"' .. account .. '","messages":[{"text":"message ' .. tag .. ' ' .. counter ..
    '","replyMessageId":null,"toAccountIds":[]}],"createAt":' .. at .. '}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"wrk":1,"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f,"non2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    e.status, e.connect, e.read, e.write, e.timeout))
end
