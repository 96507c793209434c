-- wrk script of bench/jobs: POSTs one body to one path, counts the answers
-- by status, and stops after `limit` answered POSTs.
--
-- wrk args (after --): PATH LIMIT BODY_FILE CONTENT_TYPE TOKEN THREADS DONE
--   LIMIT 0 means no limit (wrk's -d ends the load); TOKEN "-" sends no
--   Authorization header; each thread that has all its answers creates the
--   file DONE<thread number>.
--
-- wrk cannot stop after N requests by itself, and a request it has sent is
-- served whether or not wrk waits for the answer. So each thread sends at
-- most its share of POSTs; once it has, its connections send a GET to a
-- path no server here routes (a 404, which creates nothing), one every
-- 20 ms per connection, until the thread has seen every one of its POSTs
-- answered, and then stops. The server thus gets exactly LIMIT POSTs when
-- none fails in transport.
-- A 404 is therefore never counted as a POST's answer. A 429 (rate
-- limited) is counted by status but not as an answer: the POST is sent
-- again, at once, so the server still gets LIMIT jobs.
--
-- wrk's main thread sleeps for the whole -d whatever its threads do, so a
-- thread that is done says so with a file, and bench/jobs sends wrk SIGINT
-- once every thread has: wrk then prints its summary at once.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, file, ctype, token = args[1], args[3], args[4], args[5]
  done_file = args[7] .. tid
  local limit, nthreads = tonumber(args[2]), tonumber(args[6])
  local f = assert(io.open(file, "rb"))
  local body = f:read("*a")
  f:close()
  limited, share = limit > 0, 0
  if limited then
    share = math.floor(limit / nthreads)
    if tid < limit % nthreads then
      share = share + 1
    end
  end
  local headers = { ["Content-Type"] = ctype }
  if token ~= "-" then
    headers["Authorization"] = "Bearer " .. token
  end
  post = wrk.format("POST", path, headers, body)
  filler = wrk.format("GET", "/bench-jobs-no-such-route")
  sent, answered, codes = 0, 0, {}
  -- wrk calls the first thread's request() once before the load, to check
  -- what it returns (script_verify_request in wrk.c); that POST never goes
  -- out, so it must not count.
  if tid == 0 then
    sent = -1
  end
end

function request()
  if limited and sent >= share then
    return filler
  end
  sent = sent + 1
  return post
end

-- Once a thread has sent its share, its connections wait between fillers,
-- so that they hardly load the server while the last POSTs are answered.
function delay()
  if limited and sent >= share then
    return 20
  end
  return 0
end

function response(status, headers, body)
  if status == 429 and limited then
    codes[status] = (codes[status] or 0) + 1
    sent = sent - 1
  elseif status ~= 404 then
    answered = answered + 1
    codes[status] = (codes[status] or 0) + 1
  end
  if limited and answered >= share and not finished then
    finished = true
    local f = io.open(done_file, "w")
    if f then
      f:close()
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total, parts = 0, {}
  local agg = {}
  for _, t in ipairs(threads) do
    total = total + t:get("answered")
    for code, n in pairs(t:get("codes")) do
      agg[code] = (agg[code] or 0) + n
    end
  end
  for code, n in pairs(agg) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us": %d, "answered": %d, "codes": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"p50_us": %d, "p99_us": %d}\n',
    summary.duration, total, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
