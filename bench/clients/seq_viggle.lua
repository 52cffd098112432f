-- Sequential status calls with viggle: c:status(id) in a loop, retries = 0.
--   lua5.4 bench/clients/seq_viggle.lua BASE_URL JOB_ID CALLS WARMUP [CA_FILE]
-- Prints calls=N cpu_s=X wall_s=Y (CPU: os.clock, user+sys of this process,
-- over the timed calls only).
-- the library under test: the snapshot bench/run.sh took (VIGGLE_BENCH_ROOT), else this checkout
local root = os.getenv("VIGGLE_BENCH_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
local viggle = require("viggle")

local base, id = arg[1], arg[2]
local calls, warmup, ca_file = tonumber(arg[3]), tonumber(arg[4]), arg[5]
local c = assert(viggle.new({ base_url = base, retries = 0, ca_file = ca_file }))

local function run(n)
  for _ = 1, n do
    local job, err = c:status(id)
    if not job then error(tostring(err)) end
    if job.status ~= "complete" then error("unexpected status " .. tostring(job.status)) end
  end
end

run(warmup)
local c0, w0 = os.clock(), viggle.now()
run(calls)
local c1, w1 = os.clock(), viggle.now()
print(string.format("calls=%d cpu_s=%.6f wall_s=%.6f", calls, c1 - c0, w1 - w0))
