-- Turns the rows of gameloop.lua, nginx.lua and upload.lua (stdin) into the
-- markdown of bench/README.md's hosts section, with verdicts against the
-- targets of issue 11.
--   lua5.4 bench/hosts/report.lua < bench/out/hosts.txt
local rows = {}
for line in io.lines() do
  local name, rest = line:match("^(%S+)%s+(.*)$")
  if name then
    local t = {}
    for k, v in rest:gmatch("(%S+)=(%S+)") do t[k] = tonumber(v) or v end
    rows[name] = t
  end
end
local fmt = string.format
local function verdict(ok) return ok and "**met**" or "**missed**" end
local out = {}
local function w(s) out[#out + 1] = s end

w("| target (issue 11) | measured | |")
w("|---|---|---|")
for _, d in ipairs({ "20ms", "300ms" }) do
  local v, c = rows["ping:viggle:" .. d], rows["ping:cosocket:" .. d]
  if v and c then
    w(fmt("| nginx `/ping` p99 within 2 ms of the cosocket client's (API %s, 50 awaits + 2 downloads) | "
      .. "viggle p50 %.1f / p99 %.1f / max %.1f ms; cosocket p50 %.1f / p99 %.1f / max %.1f ms | %s |",
      d, v.p50_ms, v.p99_ms, v.max_ms, c.p50_ms, c.p99_ms, c.max_ms, verdict(v.p99_ms <= c.p99_ms + 2)))
  end
end
local tr, both = rows["60fps:transfers"], rows["60fps:both+20awaits"]
if tr and both then
  local cpu = math.max(tr.step_cpu_max_ms, both.step_cpu_max_ms)
  local wall = math.max(tr.step_max_ms, both.step_max_ms)
  w(fmt("| longest `step(0)` under 4 ms at any transfer size | %.2f ms of the loop thread's CPU; %.2f ms on the "
    .. "wall clock (p99 %.2f ms; the difference is the system stopping the thread) | %s |", cpu, wall,
    math.max(tr.step_p99_ms, both.step_p99_ms), verdict(cpu < 4)))
  w(fmt("| upload and download at 60 fps ≥ 0.8× blocking | upload %s MiB/s (%.2f×), download %s MiB/s (%.2f×) "
    .. "against blocking %s / %s MiB/s (medians of interleaved runs) | %s |", tr.upload_mibs, tr.upload_ratio,
    tr.download_mibs, tr.download_ratio, rows.blocking.upload_mibs, rows.blocking.download_mibs,
    verdict(tr.upload_ratio >= 0.8 and tr.download_ratio >= 0.8)))
end
local uv, uc = rows["upload:viggle"], rows["upload:curl-F"]
if uv and uc then
  w(fmt("| render upload ≥ 0.95× `curl -F`, peak RSS < 16 MiB (%d MB) | %s vs %s MiB/s (%.2f×), %.1f MiB "
    .. "(curl %.1f MiB) | %s |", uv.mb, uv.mibs, uc.mibs, uv.mibs / uc.mibs, uv.peak_rss_mib, uc.peak_rss_mib,
    verdict(uv.mibs >= 0.95 * uc.mibs and uv.peak_rss_mib < 16)))
end
w("")
w("| nginx: status calls from handlers (10 requests at once) | calls/s |")
w("|---|---|")
for _, d in ipairs({ "20ms", "300ms" }) do
  for _, cl in ipairs({ "viggle", "cosocket" }) do
    local r = rows["status:" .. cl .. ":" .. d]
    if r then w(fmt("| %s, API %s | %s |", cl, d, r.calls_per_s)) end
  end
end
w("")
w("| game loop at 60 fps | frames | longest step (CPU / wall) | p99 step | upload MiB/s | download MiB/s |")
w("|---|---|---|---|---|---|")
for _, k in ipairs({ "transfers", "both+20awaits" }) do
  local r = rows["60fps:" .. k]
  if r then
    w(fmt("| %s | %s | %.2f / %.2f ms | %.2f ms | %s | %s |", k == "transfers" and "upload, then download"
      or "20 awaits, an upload and a download at once", r.frames, r.step_cpu_max_ms, r.step_max_ms,
      r.step_p99_ms, r.upload_mibs, r.download_mibs))
  end
end
print(table.concat(out, "\n"))
