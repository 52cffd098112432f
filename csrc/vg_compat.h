/*
 * vg_compat.h: the few Lua C API differences between 5.1/LuaJIT and 5.2-5.4
 * that viggle.core meets. Everything is named vg_* so it can never clash
 * with what a given Lua (LuaJIT ships some 5.2 functions) already declares.
 */
#ifndef VG_COMPAT_H
#define VG_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 502
#define vg_rawlen(L, i) lua_rawlen((L), (i))
#define vg_setfuncs(L, l, nup) luaL_setfuncs((L), (l), (nup))
#define vg_testudata(L, i, tname) luaL_testudata((L), (i), (tname))
#else
#define vg_rawlen(L, i) lua_objlen((L), (i))

static inline void vg_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

static inline void *vg_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#endif

/* Integers: 5.3+ has a real integer subtype; older Luas store doubles. */
#if LUA_VERSION_NUM >= 503
#define VG_HAS_INTEGERS 1
#else
#define VG_HAS_INTEGERS 0
#endif

#endif
