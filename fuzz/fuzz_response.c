/*
 * fuzz_response.c: libFuzzer harness for the response path. The input is a
 * raw HTTP answer: its header block goes line by line through on_header
 * (the libcurl callback, with its cap and its reset on a new status line)
 * and push_headers; its body through core.decode (lua-cjson plus the big
 * integer, null and integer passes) and the Lua layer's error construction
 * (errors.from_http), as the client does for a non-2xx answer.
 *
 * request.c is included, not linked, to reach its static functions.
 */
#include "../csrc/request.c"
#include "harness.h"

static lua_State *L;

static const char *const driver =
  "local core, errors, status, headers, body = ...\n"
  "local decoded = core.decode(body)\n"
  "if type(decoded) == 'table' then for k, v in pairs(decoded) do local _ = tostring(k) .. type(v) end end\n"
  "local res = { status = status, headers = headers, body = body }\n"
  "local e = errors.from_http(res, decoded, { job_id = 'job_fuzz' })\n"
  "assert(errors.is(e) and type(tostring(e)) == 'string')\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *end = s + size, *p = s;
  vg_request r;
  long status = 0;
  if (L == NULL) L = fuzz_lua(driver, "viggle.errors", "errors");
  memset(&r, 0, sizeof r);
  r.out = -1;
  /* header lines until an empty one, as libcurl hands them over */
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    size_t n = eol ? (size_t)(eol - p + 1) : (size_t)(end - p);
    int blank = (n == 1) || (n == 2 && p[0] == '\r');
    if (n >= 12 && memcmp(p, "HTTP/", 5) == 0) { /* "HTTP/1.1 200": the three digits after a space */
      const char *sp = memchr(p, ' ', n - 3);
      if (sp != NULL) status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    }
    if (on_header((char *)p, 1, n, &r) != n) break;
    p += n;
    if (blank) break;
  }
  lua_settop(L, 0);
  lua_getglobal(L, "driver");
  lua_getglobal(L, "core");
  lua_getglobal(L, "errors");
  lua_pushinteger(L, status < 100 || status > 999 ? 500 : status);
  push_headers(L, &r.head);
  lua_pushlstring(L, p, (size_t)(end - p));
  fuzz_call(L, 5); /* a hostile answer must never raise */
  vg_buf_free(&r.head);
  vg_buf_free(&r.body);
  return 0;
}
