-- wrk script for bench/run.sh.
--
-- Environment:
--   PW_MODE   chat (default) | stream | health
--   PW_KEY    API key sent as `Authorization: Bearer <key>` (chat and stream)
--   PW_PROMPT user message (default "hello world")
--
-- At the end it prints one machine-readable line:
--   BENCH requests=N duration_us=N rps=N p50_us=N p90_us=N p99_us=N max_us=N mean_us=N
--         connect_err=N read_err=N write_err=N timeout_err=N
-- wrk records latency in microseconds, from sending a request to the end of its response.
-- Non-2xx answers are reported by wrk itself ("Non-2xx or 3xx responses: N"); no
-- response() callback is defined, so wrk keeps its fast path (no body copies into Lua).

local mode = os.getenv("PW_MODE") or "chat"
local key = os.getenv("PW_KEY") or ""
local prompt = os.getenv("PW_PROMPT") or "hello world"

if mode == "health" then
  wrk.method = "GET"
  wrk.path = "/v1/health"
  wrk.body = nil
else
  local stream = (mode == "stream") and ',"stream":true' or ""
  wrk.method = "POST"
  wrk.path = "/v1/chat/completions"
  wrk.body = '{"model":"echo","messages":[{"role":"user","content":"' .. prompt .. '"}]' .. stream .. '}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f connect_err=%d read_err=%d write_err=%d timeout_err=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout))
end
