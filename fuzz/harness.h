/*
 * harness.h: what the two fuzz harnesses share: a Lua 5.4 state with
 * viggle.core (the C files under test, linked in) as global `core`, the
 * driver chunk as global `driver`, and one module of the Lua layer as a
 * global of the given name.
 */
#ifndef VG_FUZZ_HARNESS_H
#define VG_FUZZ_HARNESS_H

#include <stdint.h>
#include <stdlib.h>
#include <lualib.h>

#include "../csrc/vg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *fuzz_lua(const char *driver, const char *module, const char *global) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "package.path = './lua/?.lua;' .. package.path") != LUA_OK) abort();
  luaL_requiref(L, "viggle.core", luaopen_viggle_core, 0);
  lua_setglobal(L, "core");
  if (luaL_loadstring(L, driver) != LUA_OK) abort();
  lua_setglobal(L, "driver");
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) abort();
  lua_setglobal(L, global);
  return L;
}

/* Runs the driver with the n arguments pushed after it; a Lua error is a
   finding (nothing the harness feeds may raise outside a pcall). */
static void fuzz_call(lua_State *L, int n) {
  if (lua_pcall(L, n, 0, 0) != LUA_OK) {
    fprintf(stderr, "Lua error: %s\n", lua_tostring(L, -1));
    abort();
  }
}

#endif
