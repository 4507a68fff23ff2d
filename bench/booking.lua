-- wrk script for bench/booking.py: POST /v1/appointments, every request its own
-- Idempotency-Key, slots numbered as in bench/booking.pgbench.sql: slot g is consultant
-- bench-c{g % consultants} at base + floor(g / consultants) hours (UTC).
--
-- wrk -t T -c C -d Ns -s bench/booking.lua URL -- offset consultants slots base T cap tag
--   slots 0: "distinct", request k of thread t books slot offset + k * T + t (never twice);
--   slots S: "contended", slot offset + (k * T + t) % S.
-- A thread stops after cap answers (so a run is bounded in count as well as time).
-- done() prints: one RESULT line, a STATUS line per HTTP status, a SAMPLE line (the
-- first answer neither 201 nor 409, per thread).

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local template = '{"type": "ONLINE", "category": "KITCHEN", "start": "%s", '
   .. '"consultant_id": "bench-c%02d", "customer": {"name": "Ada Lovelace", '
   .. '"email": "ada-%s-%d@example.com", "phone": "+44 7%09d", "postcode": "SW1A 1AA"}, '
   .. '"notes": "bench"}'

function init(args)
   offset = tonumber(args[1])
   consultants = tonumber(args[2])
   slots = tonumber(args[3])
   base = tonumber(args[4])
   nthreads = tonumber(args[5])
   cap = tonumber(args[6])
   tag = args[7]
   tid = wrk.thread:get("tid")
   sent = 0
   answered = 0
   statuses = {}
   sample = ""
   headers = {["Content-Type"] = "application/json"}
end

function request()
   local seq = sent * nthreads + tid
   sent = sent + 1
   local g = offset + seq
   if slots > 0 then
      g = offset + seq % slots
   end
   local start = os.date("!%Y-%m-%dT%H:00:00+00:00", base + math.floor(g / consultants) * 3600)
   headers["Idempotency-Key"] = tag .. "-" .. seq
   -- A customer per request: the per-customer booking cap is not what is measured.
   local body = string.format(template, start, g % consultants, tag, seq, seq % 1000000000)
   return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
   if status ~= 201 and status ~= 409 and sample == "" then
      sample = key .. " " .. string.sub(string.gsub(body or "", "%s+", " "), 1, 300)
   end
   answered = answered + 1
   if answered >= cap then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local counts = {}
   local most_sent = 0
   local capped = 0
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + count
      end
      most_sent = math.max(most_sent, thread:get("sent"))
      if thread:get("answered") >= thread:get("cap") then
         capped = capped + 1
      end
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%.1f p99_us=%.1f connect=%d read=%d "
         .. "write=%d timeout=%d used=%d capped=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.timeout, most_sent * #threads, capped))
   for status, count in pairs(counts) do
      io.write(string.format("STATUS %s %d\n", status, count))
   end
   for _, thread in ipairs(threads) do
      local sample = thread:get("sample")
      if sample ~= "" then
         io.write("SAMPLE " .. sample .. "\n")
      end
   end
end
