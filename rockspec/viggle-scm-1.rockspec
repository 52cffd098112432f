rockspec_format = "3.0"
package = "viggle"
version = "scm-1"
source = {
  url = "git+file:///dev/null",
}
description = {
  summary = "Client for the Viggle Render API: render, follow and download, from one job or ten thousand",
  detailed = [[
    A C core over libcurl (keep-alive, TLS, HTTP/2, streamed uploads and downloads, a
    non-blocking multi driver) and lua-cjson, with a Lua client that never blocks its host:
    coroutine-friendly waiting, retry and polling policy, typed errors, and a CLI.
  ]],
  license = "MIT",
  labels = { "http", "libcurl", "viggle", "video" },
}
supported_platforms = { "linux", "macosx", "freebsd" }
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1",
}
-- Batches (viggle.batch, `viggle batch`) also need LuaSQL for SQLite (Debian's
-- lua-sql-sqlite3, the luasql-sqlite3 rock), loaded only when a batch runs:
-- everything else works without it.
-- libcurl (7.85 or newer) is a system library: Debian's libcurl4-openssl-dev;
-- so is hiredis (fleets on Redis): Debian's libhiredis-dev.
-- No external_dependencies block: LuaRocks 3.8 does not look in Debian's
-- multiarch include directory, where the compiler finds curl/curl.h by itself.
build = {
  type = "builtin",
  modules = {
    ["viggle.core"] = {
      sources = { "csrc/core.c", "csrc/request.c", "csrc/multi.c", "csrc/part.c", "csrc/json.c", "csrc/buf.c",
                  "csrc/error.c", "csrc/redis.c", "csrc/worker.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl", "hiredis", "m", "pthread" },
    },
    ["viggle"] = "lua/viggle/init.lua",
    ["viggle.client"] = "lua/viggle/client.lua",
    ["viggle.http"] = "lua/viggle/http.lua",
    ["viggle.follow"] = "lua/viggle/follow.lua",
    ["viggle.ngx"] = "lua/viggle/ngx.lua",
    ["viggle.render"] = "lua/viggle/render.lua",
    ["viggle.assets"] = "lua/viggle/assets.lua",
    ["viggle.errors"] = "lua/viggle/errors.lua",
    ["viggle.loop"] = "lua/viggle/loop.lua",
    ["viggle.heap"] = "lua/viggle/heap.lua",
    ["viggle.uv"] = "lua/viggle/uv.lua",
    ["viggle.nvim"] = "lua/viggle/nvim.lua",
    ["viggle.cli"] = "lua/viggle/cli.lua",
    ["viggle.cli_help"] = "lua/viggle/cli_help.lua",
    ["viggle.cli_batch"] = "lua/viggle/cli_batch.lua",
    ["viggle.estimate"] = "lua/viggle/estimate.lua",
    ["viggle.preflight"] = "lua/viggle/preflight.lua",
    ["viggle.batch"] = "lua/viggle/batch.lua",
    ["viggle.journal"] = "lua/viggle/journal.lua",
    ["viggle.cli_assets"] = "lua/viggle/cli_assets.lua",
    ["viggle.journal_redis"] = "lua/viggle/journal_redis.lua",
    ["viggle.redis"] = "lua/viggle/redis.lua",
    ["viggle.resp"] = "lua/viggle/resp.lua",
    ["viggle.fleet"] = "lua/viggle/fleet.lua",
  },
  install = {
    bin = { viggle = "bin/viggle" },
  },
}
