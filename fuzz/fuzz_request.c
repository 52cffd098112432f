/*
 * fuzz_request.c: libFuzzer harness for request building. The input is cut
 * at NUL bytes into a URL, a method, a header line, a form field name and
 * value, an id and a number; they go through req:setup (options read, fast
 * or full setup, headers, form) twice (the second takes the fast path when
 * it can) and through the Lua layer's URL split and id checks. Nothing is
 * sent: no transfer is started. Misuse may raise (argument errors); memory
 * errors and undefined behaviour are what is looked for. client:status runs
 * for a quarter of the inputs: its base URL is 127.0.0.1:1, which refuses at
 * once, after the id was checked and the URL built.
 */
#include <string.h>

#include "harness.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *end = s + size;
  int i;
  if (L == NULL) L = fuzz_lua(driver, "viggle.client", "client");
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
  fuzz_call(L, 9); /* pcall'ed misuse aside, nothing here may raise */
  return 0;
}
