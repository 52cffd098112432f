-- The fault table: each fault a broken or hostile server (or the network)
-- can cause, against each operation, with its outcome. README.md shows it
-- (the section between the "faults" markers is this file's markdown(), and
-- spec/faults_spec.lua checks that it is); spec/faults_spec.lua runs every
-- cell against the mock (spec/mock/README.md has the fault kinds).
--
--   lua5.4 spec/faults_table.lua     prints the README section
--
-- An outcome is "ok" (the call succeeded) or an error kind; "+" after it
-- means the call sent the request more than once (retried, or polled again),
-- none means exactly once.
local M = {}

M.ops = { "status", "await", "await_all", "render", "cancel", "download" }

-- For each fault: name, what the client gets, the mock fault (a table, or
-- a function of the operation's path giving one; nil for "refused"), and
-- the outcome per operation.
local function big_headers() return { kind = "raw", text = "HTTP/1.1 200 OK\r\n", pad_header = 300000, after = "\r\n{}" } end
M.faults = {
  { "refused", "nothing listens on the port", nil,
    { status = "network+", await = "network+", await_all = "network+", render = "network+", cancel = "network",
      download = "network" } },
  { "reset in headers", "the connection closes in the middle of a header line",
    { kind = "raw", text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Len" },
    { status = "network+", await = "timeout+", await_all = "timeout+", render = "network", cancel = "network",
      download = "network" } },
  { "reset in body", "200 with a Content-Length larger than what comes, then the close",
    { kind = "truncated" },
    { status = "network+", await = "timeout+", await_all = "timeout+", render = "network", cancel = "network",
      download = "network" } },
  { "truncated JSON", "200, `{\"job_id\": \"x\", \"status\": ` and the end",
    { kind = "malformed" },
    { status = "decode+", await = "timeout+", await_all = "timeout+", render = "decode", cancel = "decode",
      download = "http" } },
  { "non-JSON", "200, `text/plain` text",
    { kind = "status", status = 200, body = "all good", content_type = "text/plain" },
    { status = "decode+", await = "timeout+", await_all = "timeout+", render = "decode", cancel = "decode",
      download = "http" } },
  { "empty", "200 with no body",
    { kind = "status", status = 200, body = "" },
    { status = "decode+", await = "timeout+", await_all = "timeout+", render = "decode", cancel = "ok",
      download = "http" } },
  { "HTML 200", "a proxy's `text/html` page with status 200",
    { kind = "html", status = 200 },
    { status = "decode+", await = "timeout+", await_all = "timeout+", render = "decode", cancel = "decode",
      download = "http" } },
  { "429 with Retry-After", "429, `Retry-After: 1`",
    { kind = "status", status = 429, retry_after = "1" },
    { status = "rate_limited+", await = "timeout", await_all = "timeout", render = "rate_limited+",
      cancel = "rate_limited", download = "rate_limited" } },
  { "429 without Retry-After", "429 alone",
    { kind = "status", status = 429 },
    { status = "rate_limited+", await = "timeout+", await_all = "timeout+", render = "rate_limited+",
      cancel = "rate_limited", download = "rate_limited" } },
  { "429 with Retry-After: 0", "429, `Retry-After: 0` (polls still wait `interval`)",
    { kind = "status", status = 429, retry_after = "0" },
    { status = "rate_limited+", await = "timeout+", await_all = "timeout+", render = "rate_limited+",
      cancel = "rate_limited", download = "rate_limited" } },
  { "500", "500 with a JSON `detail`",
    { kind = "status", status = 500 },
    { status = "http+", await = "timeout+", await_all = "timeout+", render = "http", cancel = "http",
      download = "http" } },
  { "502", "502 with a JSON `detail`",
    { kind = "status", status = 502 },
    { status = "http+", await = "timeout+", await_all = "timeout+", render = "http", cancel = "http",
      download = "http" } },
  { "503", "503 with a JSON `detail`",
    { kind = "status", status = 503 },
    { status = "http+", await = "timeout+", await_all = "timeout+", render = "http", cancel = "http",
      download = "http" } },
  { "504", "504 with a JSON `detail`",
    { kind = "status", status = 504 },
    { status = "http+", await = "timeout+", await_all = "timeout+", render = "http", cancel = "http",
      download = "http" } },
  { "stall", "half the answer, then nothing for longer than the timeout (in `await`, than the deadline)",
    { kind = "stall", delay = 2.5 },
    { status = "timeout+", await = "timeout", await_all = "timeout", render = "timeout", cancel = "timeout",
      download = "timeout" } },
  { "redirect loop", "302 to the same path, for ever",
    function(path) return { kind = "status", status = 302, location = path } end,
    { status = "http", await = "http", await_all = "http", render = "http", cancel = "http",
      download = "network" } },
  { "redirect off-host", "302 to another origin (a CDN link may redirect: followed, without the key)",
    function(_, other) return { kind = "status", status = 302, location = other } end,
    { status = "http", await = "http", await_all = "http", render = "http", cancel = "http",
      download = "ok" } },
  { "oversized headers", "a 300 KB header line",
    big_headers,
    { status = "too_large", await = "too_large", await_all = "too_large", render = "too_large", cancel = "too_large",
      download = "too_large" } },
  { "oversized body", "200, a JSON object of 200 KB (over `max_body` of API calls)",
    { kind = "huge", size = 200000 },
    { status = "too_large", await = "too_large", await_all = "too_large", render = "too_large",
      cancel = "too_large", download = "http" } },
  { "invalid UTF-8", "200, a job whose `checkpoint` is bytes FF FE",
    { kind = "malformed", body_base64 = "eyJqb2JfaWQiOiJqb2JfZiIsInN0YXR1cyI6InF1ZXVlZCIsImNoZWNrcG9pbnQiOiL//iJ9" },
    { status = "ok", await = "timeout+", await_all = "timeout+", render = "ok", cancel = "ok", download = "http" } },
  { "deep JSON", "200, 5,000 nested arrays (deeper than the decoder's 1,000)",
    { kind = "malformed", body = ("["):rep(5000) .. ("]"):rep(5000) },
    { status = "decode+", await = "timeout+", await_all = "timeout+", render = "decode", cancel = "decode",
      download = "http" } },
  { "hostile field types", "`progress_pct` 1e400, NaN, text; `checkpoint` an object (dropped)",
    { kind = "fields", set = { progress_pct = "1e400", checkpoint = "{}", mode = "NaN", error_code = "[1]" } },
    { status = "ok", await = "ok+", await_all = "ok+", render = "ok", cancel = "ok", download = "ok" } },
}

-- "network+" -> "`network`, retried"
local function cell(outcome)
  local kind, again = outcome:match("^([%w_]+)(%+?)$")
  local s = kind == "ok" and "ok" or ("`" .. kind .. "`")
  if again == "+" then s = s .. ", retried" end
  return s
end

--- The README section (without its markers).
function M.markdown()
  local out = {
    "Each cell: `ok` or the error kind the call returns, and whether the request went out more than once",
    "(\"retried\": a retry, or another poll). `status` retries once here (`retries = 1`); `await` and",
    "`await_all` poll every 0.05 s with a 0.4 s deadline (a `timeout` there is the deadline: they never",
    "end on a transient failure); request timeout 1 s; `max_body` 64 KiB; `download` fetches a CDN",
    "link. Every cell is a spec (`spec/faults_spec.lua`, from `spec/faults_table.lua`).",
    "",
    "| fault | what comes | " .. table.concat(M.ops, " | ") .. " |",
    "|---|---|" .. ("---|"):rep(#M.ops),
  }
  for _, f in ipairs(M.faults) do
    local row = { f[1], f[2] }
    for _, op in ipairs(M.ops) do row[#row + 1] = cell(f[4][op]) end
    out[#out + 1] = "| " .. table.concat(row, " | ") .. " |"
  end
  return table.concat(out, "\n") .. "\n"
end

M.BEGIN = "<!-- faults: generated from spec/faults_table.lua -->"
M.END = "<!-- faults: end -->"

if arg and arg[0] and arg[0]:find("faults_table%.lua$") then io.write(M.markdown()) end

return M
