-- Sequential status calls on viggle's C core alone: the least a Lua client
-- built on libcurl and lua-cjson can do. One request handle, set up anew per
-- call with nothing but the URL and the timeouts (no headers, no checks, no
-- null or integer pass), blocking perform, cjson.decode of the body.
--   lua5.4 bench/clients/seq_floor.lua BASE_URL JOB_ID CALLS WARMUP [CA_FILE]
-- Prints calls=N cpu_s=X wall_s=Y (CPU: os.clock over the timed calls only).
local root = os.getenv("VIGGLE_BENCH_ROOT") or "."
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
local core = require("viggle.core")
local cjson = require("cjson")

local base, id = arg[1], arg[2]
local calls, warmup, ca_file = tonumber(arg[3]), tonumber(arg[4]), arg[5]
local r = assert(core.request())
local spec = { url = base .. "/api/render/" .. id, timeout = 30, connect_timeout = 10, ca_file = ca_file }

local function run(n)
  for _ = 1, n do
    assert(r:setup(spec))
    local res, err = r:perform()
    if not res then error(err) end
    if cjson.decode(res.body).status ~= "complete" then error("unexpected status") end
  end
end

run(warmup)
local c0, w0 = os.clock(), core.now()
run(calls)
local c1, w1 = os.clock(), core.now()
print(string.format("calls=%d cpu_s=%.6f wall_s=%.6f", calls, c1 - c0, w1 - w0))
