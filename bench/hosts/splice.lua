-- Puts bench/out/hosts.md into bench/README.md as its "Hosts (issue 11)"
-- section (between the markers; before "## Why the misses" the first time).
--   lua5.4 bench/hosts/splice.lua "LOAD NOTE"   (from the repository's root)
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
local readme = require("bench.lib.hosts_section").put(read("bench/README.md"), section)
local f = assert(io.open("bench/README.md", "wb"))
f:write(readme)
f:close()
