-- Loaded by busted before the specs (see .busted): puts this checkout's
-- library and the module built for the running interpreter first.
local build = (type(jit) == "table") and "jit" or _VERSION:match("%d+%.%d+")
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/" .. build .. "/?.so;" .. package.cpath
