-- Download with viggle: c:download(url, path, {overwrite = true}).
--   lua5.4 bench/clients/download_viggle.lua URL PATH
-- Prints bytes=N wall_s=X cpu_s=Y (over the download only).
-- the library under test: the snapshot bench/run.sh took (VIGGLE_BENCH_ROOT), else this checkout
local root = os.getenv("VIGGLE_BENCH_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
local viggle = require("viggle")

local url, path = arg[1], arg[2]
local c = assert(viggle.new({ base_url = url:match("^(https?://[^/]+)"), retries = 0 }))
local c0, w0 = os.clock(), viggle.now()
local ok, info = c:download(url, path, { overwrite = true })
local c1, w1 = os.clock(), viggle.now()
if not ok then error(tostring(info)) end
print(string.format("bytes=%d wall_s=%.6f cpu_s=%.6f", info.bytes, w1 - w0, c1 - c0))
