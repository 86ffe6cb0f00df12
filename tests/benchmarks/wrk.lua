-- wrk script for the admission benchmark: POSTs the AdmissionReview bodies named in
-- MODELPIN_BENCH_BODIES (colon-separated files) round-robin, prints one JSON line at the end.
-- With MODELPIN_BENCH_SEQ_BASE set, every request replaces __SEQ__ in its body by a fresh number
-- above that base, so no two reviews (of this run, or of runs given bases far enough apart) carry
-- the same text.
local bodies = {}
for path in string.gmatch(os.getenv("MODELPIN_BENCH_BODIES"), "[^:]+") do
  local f = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
local base = os.getenv("MODELPIN_BENCH_SEQ_BASE")
local distinct = base ~= nil and base ~= ""
local i = 0
local seq = distinct and tonumber(base) or 0
request = function()
  i = i % #bodies + 1
  local body = bodies[i]
  if distinct then
    seq = seq + 1
    body = (string.gsub(body, "__SEQ__", tostring(seq)))
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
