-- bench/lib/plots.lua: the gnuplot figures of scenarios 1-4.
local C = require("bench.lib.common")
local concat, format = table.concat, string.format
local DELAY, OUT, q, read_file, write_file, say, tail = C.DELAY, C.OUT, C.q, C.read_file, C.write_file, C.say, C.tail
local med = require("bench.lib.report").med

local M = {}

-- ---------------------------------------------------------------------------
-- plots (gnuplot, PNG)


local function gnuplot(name, script)
  local gp = OUT .. "/" .. name .. ".gp"
  write_file(gp, script)
  local ok = os.execute("gnuplot " .. q(gp) .. " >" .. OUT .. "/tmp/gnuplot.txt 2>&1")
  if not ok then say("  gnuplot %s failed: %s", name, tail(read_file(OUT .. "/tmp/gnuplot.txt") or "")) end
  return ok
end

local GP_HEAD = [[
set terminal pngcairo size 1100,%d font "DejaVu Sans,11" noenhanced
set output "%s"
set border 3
set tics nomirror
set grid ytics lc rgb "#dddddd"
set key noautotitle
]]

local function plot_sequential()
  local s1, s2 = C.R.scenarios[1], C.R.scenarios[2]
  if not s1 and not s2 then return nil end
  -- one bar per client: CPU µs per call (log scale), error bars min..max
  local lines = {}
  local i = 0
  local function add(s, label)
    if not s then return end
    for _, row in ipairs(s.rows) do
      local st = row.st and row.st.cpu_us
      if st then
        local colour = row.viggle and "0xd62728" or (row.ref and "0x2ca02c" or "0x7f7f7f")
        lines[#lines + 1] = format("%d %g %g %g \"%s\" %s", i, st.median, st.min, st.max,
          (label .. row.name:gsub("`", ""):gsub(" %(.-%)", "")):gsub('"', "'"), colour)
        i = i + 1
      end
    end
    i = i + 1
  end
  add(s1, "HTTP: ")
  add(s2, "TLS: ")
  local dat = OUT .. "/sequential.dat"
  write_file(dat, concat(lines, "\n") .. "\n")
  local png = C.plot_dir .. "/plot-sequential.png"
  gnuplot("sequential", format(GP_HEAD, 620, png) .. format([[
set title "Sequential status calls: client CPU per call\n(median; whiskers: min..max over runs; lower is better)"
set logscale x 10
set xlabel "client CPU microseconds per call (user+sys, log scale)"
set ytics scale 0
set yrange [%d:-1]
set xrange [10:*]
set style fill solid 0.85 noborder
set format x "%%g"
plot "%s" using (($2+10)/2):1:(10):2:($1-0.38):($1+0.38):6:ytic(5) with boxxyerror lc rgb variable, \
     "" using 2:1:3:4 with xerrorbars pt 0 lc rgb "black", \
     "" using ($4*1.06):1:(sprintf("%%.1f", $2)) with labels left font ",9"
]], i, dat))
  return png
end

local function plot_many()
  local s3 = C.R.scenarios[3]
  if not s3 then return nil end
  -- wall time against jobs: one panel per protocol, one line per client; the
  -- plain loops (HTTP/1.1) are drawn in both panels as the reference
  local series, order = {}, {}
  for _, t in ipairs(s3.tables) do
    for _, row in ipairs(t.rows) do
      local w = med(row, "wall_s")
      if w then
        if not series[row.key] then series[row.key] = {} order[#order + 1] = row end
        local lines = series[row.key]
        lines[#lines + 1] = format("%d %g %g %g", t.size, w, row.st.wall_s.min, row.st.wall_s.max)
      end
    end
  end
  local style = {
    loop_viggle = 'dt 2 lw 2 pt 7 lc rgb "#222222"', loop_requests = 'dt 3 lw 2 pt 7 lc rgb "#888888"',
    viggle_1_256 = 'lw 3 pt 7 lc rgb "#d62728"', viggle_1_1024 = 'lw 3 pt 9 lc rgb "#ff7f0e"',
    viggle_2_256 = 'lw 3 pt 7 lc rgb "#d62728"', viggle_2_1024 = 'lw 3 pt 9 lc rgb "#ff7f0e"',
    viggle_2_cap = 'lw 3 pt 11 lc rgb "#e377c2"',
    raw_1 = 'lw 2 pt 5 lc rgb "#2ca02c"', raw_2 = 'lw 2 pt 5 lc rgb "#2ca02c"',
    raw_2_cap = 'lw 2 pt 13 lc rgb "#1f77b4"', pool_1 = 'lw 2 dt 4 pt 11 lc rgb "#9467bd"',
  }
  local panels = { { "HTTP/1.1", {} }, { "HTTP/2 (TLS)", {} } }
  for k, row in ipairs(order) do
    local dat = format("%s/many-%d.dat", OUT, k)
    write_file(dat, concat(series[row.key], "\n") .. "\n")
    local label = row.name:gsub("`", ""):gsub(" one job after another", "")
    local item = format("%q using 1:2:3:4 with yerrorlines %s ps 0.9 title %q", dat,
      style[row.key] or "lw 2 pt 7", label)
    for _, panel in ipairs(panels) do
      if row.key:match("^loop") or row.proto == panel[1] then panel[2][#panel[2] + 1] = item end
    end
  end
  local body = {}
  for _, panel in ipairs(panels) do
    body[#body + 1] = format('set title "%s"\nplot %s', panel[1], concat(panel[2], ", \\\n     "))
  end
  local png = C.plot_dir .. "/plot-many-jobs.png"
  gnuplot("many", format(GP_HEAD, 700, png) .. format([[
set multiplot layout 1,2 title "Many jobs, %g ms per answer: wall time until every job is final\n]] ..
  [[(median; whiskers: min..max; lower is better)"
set logscale xy 10
set xlabel "jobs"
set ylabel "seconds (log scale)"
set key outside below vertical Left reverse font ",9" spacing 1.05 width -8 height 1
set bmargin 12
set xrange [70:14000]
set yrange [0.01:400]
set format y "%%g"
set arrow from 70,1 to 14000,1 nohead dt 3 lc rgb "#555555"
set label "1 s: the target for 10,000 jobs" at 80,1.35 font ",9" tc rgb "#555555"
%s
unset multiplot
]], DELAY * 1000, concat(body, "\n")))
  return png
end

local function plot_download()
  local s4 = C.R.scenarios[4]
  if not s4 then return nil end
  local lines = {}
  for i, row in ipairs(s4.rows) do
    local a, b = row.st.mib_s, row.st.rss_kb
    if a and b then
      lines[#lines + 1] = format("%d %g %g %g %g \"%s\" %s", i - 1, a.median, a.min, a.max, b.median / 1024,
        row.name:gsub("`", ""):gsub(" %(.-%)", ""), row.viggle and "0xd62728" or (row.ref and "0x2ca02c" or "0x7f7f7f"))
    end
  end
  local dat = OUT .. "/download.dat"
  write_file(dat, concat(lines, "\n") .. "\n")
  local png = C.plot_dir .. "/plot-download.png"
  gnuplot("download", format(GP_HEAD, 420, png) .. format([[
set multiplot layout 1,2 title "Download of %s from the mock CDN (median; whiskers: min..max over runs)"
set style fill solid 0.85 noborder
set ytics scale 0
set yrange [%d:-0.6]
set title "throughput, MiB/s (higher is better)"
set xrange [0:*]
set xtics 500
plot "%s" using ($2/2):1:($2/2):(0.38):7:ytic(6) with boxxyerror lc rgb variable, \
     "" using 2:1:3:4 with xerrorbars pt 0 lc rgb "black", \
     "" using ($4 + 30):1:(sprintf("%%.0f", $2)) with labels left font ",9"
set title "peak RSS, MiB (log scale; lower is better)"
set xtics auto
set logscale x 10
set xrange [1:20000]
set format y ""
set arrow from 16, graph 0 to 16, graph 1 nohead dt 3 lc rgb "#555555"
set label "16 MiB" at 16, graph 1.03 center font ",9" tc rgb "#555555"
plot "%s" using (sqrt($5)):1:(1):5:($1-0.38):($1+0.38):7 with boxxyerror lc rgb variable, \
     "" using ($5*1.1):1:(sprintf("%%.1f", $5)) with labels left font ",9"
unset multiplot
]], C.cfg.dl_size >= 2 ^ 30 and format("%g GiB", C.cfg.dl_size / 2 ^ 30) or format("%g MiB", C.cfg.dl_size / 2 ^ 20),
    #lines, dat, dat))
  return png
end

M.gnuplot = gnuplot
M.plot_sequential = plot_sequential
M.plot_many = plot_many
M.plot_download = plot_download

return M
