-- Puts bench/out/hosts.md into bench/README.md as its "Hosts (issue 11)"
-- section (between the markers; before "## Why the misses" the first time).
--   lua5.4 bench/hosts/splice.lua "LOAD NOTE"
local function read(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local rows = read("bench/out/hosts.md")
local note = arg[1] or ""
local section = "<!-- hosts: written by bench/hosts/run.sh -->\n## 6. Hosts (issue 11): game loop, nginx, big upload\n\n"
  .. "Written by `bash bench/hosts/run.sh` (also run by `make bench`) " .. os.date("!%Y-%m-%d %H:%M UTC") .. ". "
  .. note .. "\nScripts: `bench/hosts/gameloop.lua`, `bench/hosts/nginx.lua` (with the minimal cosocket client "
  .. "`bench/hosts/cosocket_client.lua`), `bench/hosts/upload.lua`; what the figures mean: `bench/notes.md` "
  .. "(\"Hosts (issue 11)\").\n\n" .. rows .. "\n\nThe fourth target of issue 11 (sequential status CPU at most 1.15x "
  .. "the raw libcurl loop, and at or below the LuaSocket client) is judged in scenario 1 and the "
  .. "first two rows of the targets table: **missed**, and out of reach on libcurl "
  .. "(why: `bench/notes.md`, \"Sequential status CPU, last look\").\n<!-- /hosts -->\n"
local readme = read("bench/README.md")
local a = readme:find("<!-- hosts: written by bench/hosts/run.sh -->", 1, true)
local b = readme:find("<!-- /hosts -->\n", 1, true)
if a and b then
  readme = readme:sub(1, a - 1) .. section .. readme:sub(b + #"<!-- /hosts -->\n")
else
  local at = readme:find("## Why the misses", 1, true) or #readme + 1
  readme = readme:sub(1, at - 1) .. section .. "\n" .. readme:sub(at)
end
local f = assert(io.open("bench/README.md", "wb"))
f:write(readme)
f:close()
