-- bench/lib/stats.lua: medians, ranges, paired ratios, and the way figures are printed.
local format = string.format
local M = {}

-- ---------------------------------------------------------------------------
-- statistics and formatting

local function stats(xs)
  local t = {}
  for i = 1, #xs do if xs[i] == xs[i] then t[#t + 1] = xs[i] end end -- drop NaN
  if #t == 0 then return nil end
  table.sort(t)
  local n = #t
  local med = (n % 2 == 1) and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
  return { median = med, min = t[1], max = t[n], n = n }
end

local function num(x)
  if x == nil or x ~= x then return "n/a" end
  local a = math.abs(x)
  if a >= 1000 then return format("%.0f", x)
  elseif a >= 100 then return format("%.0f", x)
  elseif a >= 10 then return format("%.1f", x)
  elseif a >= 1 then return format("%.2f", x)
  elseif a >= 0.01 then return format("%.3f", x)
  else return format("%.4f", x) end
end

local function thousands(x)
  local s = format("%.0f", x)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

-- "median (min-max)" for a stats table
local function cell(st, f)
  if not st then return "n/a" end
  f = f or num
  if st.n == 1 or st.min == st.max then return f(st.median) end
  return format("%s (%s–%s)", f(st.median), f(st.min), f(st.max))
end

local function ratio(a, b)
  if not a or not b or b == 0 then return "n/a" end
  return format("%.2f×", a / b)
end

-- the paired ratio of a row (median, and min–max over runs) if there is
-- one, else the ratio of the medians
local function pratio(row, key, ref)
  local p = row and row.pair and row.pair[key]
  if row and row.ref then return "1.00×" end
  if p then
    if p.n == 1 or p.min == p.max then return format("%.2f×", p.median) end
    return format("%.2f× (%.2f–%.2f)", p.median, p.min, p.max)
  end
  local a = row and row.st and row.st[key] and row.st[key].median
  local b = ref and ref.st and ref.st[key] and ref.st[key].median
  return ratio(a, b)
end
local function contender_stats(samples, keys)
  local out = {}
  for _, k in ipairs(keys) do
    local xs = {}
    for _, s in ipairs(samples) do xs[#xs + 1] = s[k] or (0 / 0) end
    out[k] = stats(xs)
  end
  return out
end

-- Ratios of one contender to the reference run by run (run i of both were
-- measured back to back, so a slow spell of the machine cancels out).
-- samples: lists of results carrying .run; returns {key = stats of ratios}.
local function paired(samples, ref_samples, keys)
  local by_run = {}
  for _, r in ipairs(ref_samples or {}) do by_run[r.run] = r end
  local out = {}
  for _, k in ipairs(keys) do
    local xs = {}
    for _, r in ipairs(samples or {}) do
      local b = by_run[r.run]
      if b and r[k] and b[k] and b[k] ~= 0 then xs[#xs + 1] = r[k] / b[k] end
    end
    out[k] = stats(xs)
  end
  return out
end

M.stats = stats
M.num = num
M.thousands = thousands
M.cell = cell
M.ratio = ratio
M.pratio = pratio
M.contender_stats = contender_stats
M.paired = paired

return M
