-- Loaded by busted before the specs (see .busted): puts this checkout's
-- library and the module built for the running interpreter first.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = require("spec.support").build_dir() .. "/?.so;" .. package.cpath
