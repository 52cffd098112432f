-- bench/lib/hosts_section.lua: where the "Hosts (issue 11)" section of
-- bench/README.md goes. bench/hosts/splice.lua puts a new one in;
-- bench/bench.lua keeps the one there when it rewrites the rest.
local M = {}

local OPEN, CLOSE = "<!-- hosts: written by bench/hosts/run.sh -->", "<!-- /hosts -->\n"

--- The section (markers included) in the README text, or nil.
function M.get(readme)
  local a = readme:find(OPEN, 1, true)
  local b = a and readme:find(CLOSE, a, true)
  return b and readme:sub(a, b + #CLOSE - 1) or nil
end

--- The README text with `section` in place of its old one, or, the first
--- time, before "## Why the misses" (or at the end).
function M.put(readme, section)
  local a = readme:find(OPEN, 1, true)
  local b = a and readme:find(CLOSE, a, true)
  if b then return readme:sub(1, a - 1) .. section .. readme:sub(b + #CLOSE) end
  local at = readme:find("## Why the misses", 1, true) or #readme + 1
  return readme:sub(1, at - 1) .. section .. "\n" .. readme:sub(at)
end

return M
