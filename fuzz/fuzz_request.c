/*
 * fuzz_request.c: libFuzzer harness for request building. The input is cut
 * at NUL bytes into a URL, a method, a header line, a form field name and
 * value, an id and a number; they go through req:setup (options read, fast
 * or full setup, headers, form) twice (the second takes the fast path when
 * it can) and through the Lua layer's URL split and id checks. Nothing is
 * sent: no transfer is started. Misuse may raise (argument errors); memory
 * errors and undefined behaviour are what is looked for.
 */
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/vg.h"

static lua_State *L;

static const char *const driver =
  "local core, client, url, method, header, name, value, id, num = ...\n"
  "local r = core.request()\n"
  "local n = tonumber(num) or 0\n"
  "local spec = { url = url, method = method ~= '' and method or nil, headers = { header },\n"
  "  timeout = n >= 0 and n or -n, low_speed_time = n % 7, max_body = n * 1024,\n"
  "  form = name ~= '' and { { name = name, value = value } } or nil }\n"
  "pcall(r.setup, r, spec)\n"
  "spec.form, spec.method = nil, nil\n"
  "pcall(r.setup, r, spec)\n"
  "pcall(r.setup, r, spec)\n"
  "r:close()\n"
  "local c = client.new({ base_url = url, api_key = 'sk-fuzz', retries = 0 })\n"
  "if c and #id % 4 == 0 then pcall(c.status, c, id) end\n"; /* a quarter: it connects */

static void init(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_dostring(L, "package.path = './lua/?.lua;' .. package.path");
  luaL_requiref(L, "viggle.core", luaopen_viggle_core, 0);
  lua_setglobal(L, "core");
  if (luaL_loadstring(L, driver) != LUA_OK) abort();
  lua_setglobal(L, "driver");
  /* status(id) with an unreachable base: the id is checked and the URL
     built, then the transfer fails at once (port 1 refuses) */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "viggle.client");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) abort();
  lua_setglobal(L, "client");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *end = s + size;
  int i;
  if (L == NULL) init();
  lua_settop(L, 0);
  lua_getglobal(L, "driver");
  lua_getglobal(L, "core");
  lua_getglobal(L, "client");
  for (i = 0; i < 7; i++) { /* url, method, header, name, value, id, number */
    const char *z = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    const char *e = z ? z : end;
    if (i == 0) lua_pushliteral(L, "http://127.0.0.1:1/");
    lua_pushlstring(L, s, (size_t)(e - s));
    if (i == 0) lua_concat(L, 2);
    s = z ? z + 1 : end;
  }
  if (lua_pcall(L, 9, 0, 0) != LUA_OK) {
    fprintf(stderr, "Lua error: %s\n", lua_tostring(L, -1));
    abort(); /* pcall'ed misuse aside, nothing here may raise */
  }
  return 0;
}
