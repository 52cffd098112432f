-- A LuaRocks configuration that tells LuaRocks lua-cjson is already there:
-- Debian's package lua-cjson (2.1.0) installs it for every Lua outside any
-- rocks tree, where LuaRocks cannot see it, so the rockspec's dependency
-- "lua-cjson >= 2.1" would send LuaRocks to a registry. Use it so:
--   LUAROCKS_CONFIG=rockspec/system-lua-cjson.lua luarocks make rockspec/viggle-scm-1.rockspec
-- (it stands in for your own ~/.luarocks/config-5.x.lua during that command;
-- the system configuration still applies).
rocks_provided = { -- luacheck: ignore 111
  ["lua-cjson"] = "2.1.0-1",
}
