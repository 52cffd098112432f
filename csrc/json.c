/*
 * json.c: JSON text -> Lua values through lua-cjson's safe decoder, held once
 * as an upvalue (never looked up per call), with three fixes on top:
 *  - an integer too large for a double (more than 2^53) is kept as a string,
 *    so an id is never rounded;
 *  - JSON null inside an object becomes an absent key (nil); inside an array
 *    it stays cjson.null, so arrays keep their length;
 *  - on Lua 5.3+ a whole number comes back as an integer (5, not 5.0);
 * and, when asked, a top-level field that must be text and is not is dropped
 * (the walk that does the above does it for free: no second pass in Lua).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vg.h"

#define VG_MAX_DEPTH 1000

/* Length of the number token at s (s[0] is '-' or a digit); *integral says
   it has no fraction or exponent, *digits counts its digits. */
static size_t number_token(const char *s, size_t n, int *integral, size_t *digits) {
  size_t i = 0;
  *integral = 1;
  *digits = 0;
  if (i < n && s[i] == '-') i++;
  while (i < n && s[i] >= '0' && s[i] <= '9') i++, (*digits)++;
  while (i < n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == '+' || s[i] == '-' ||
                   (s[i] >= '0' && s[i] <= '9'))) {
    *integral = 0;
    i++;
  }
  return i;
}

static int too_big(const char *s, size_t len, int integral, size_t digits) {
  if (!integral || digits < 16) return 0;
  if (s[0] == '-') s++, len--;
  return digits > 16 || memcmp(s, "9007199254740992", 16) > 0;
}

/* True when the text has a run of 16 or more digits anywhere: only then can
   it hold an integer a double cannot keep (a cheap test for the common case). */
#define IS_DIGIT(c) ((unsigned char)((c) - '0') <= 9)
static int has_long_digit_run(const char *s, size_t n) {
  size_t i = 15, j, k;
  /* A run of 16 ending at i or later holds s[i] or lies wholly after it, so
     when s[i] is no digit the next probe is 16 bytes on: most bytes are never
     read. A digit is widened to its run, back then forth. */
  while (i < n) {
    if (!IS_DIGIT(s[i])) {
      i += 16;
      continue;
    }
    for (j = i; j > 0 && i - j < 15 && IS_DIGIT(s[j - 1]); j--) {}
    if (i - j == 15) return 1;
    for (k = i + 1; k < n && IS_DIGIT(s[k]); k++)
      if (k - j >= 15) return 1;
    i = k + 16; /* s[k] is no digit (or the end): the next run ends past k + 15 */
  }
  return 0;
}

/* Returns a copy of the text with too-big integers quoted, or NULL when the
   text has none (the common case: no copy is made). */
static char *quote_big_integers(const char *s, size_t n, size_t *outn) {
  vg_buf out = {NULL, 0, 0};
  size_t i = 0, from = 0;
  int in_string = 0, found = 0;
  if (!has_long_digit_run(s, n)) return NULL;
  while (i < n) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = 0;
      i++;
    } else if (c == '"') {
      in_string = 1;
      i++;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      int integral;
      size_t digits, len = number_token(s + i, n - i, &integral, &digits);
      if (too_big(s + i, len, integral, digits)) {
        found = 1;
        if (vg_buf_append(&out, s + from, i - from) || vg_buf_append(&out, "\"", 1) ||
            vg_buf_append(&out, s + i, len) || vg_buf_append(&out, "\"", 1)) {
          vg_buf_free(&out);
          return NULL;
        }
        from = i + len;
      }
      i += len;
    } else {
      i++;
    }
  }
  if (!found) return NULL;
  if (vg_buf_append(&out, s + from, n - from)) {
    vg_buf_free(&out);
    return NULL;
  }
  *outn = out.len;
  return out.data;
}

/* True when the field at -2 (key) is named in the set at `strings` (0: none). */
static int must_be_text(lua_State *L, int strings) {
  int named;
  if (strings == 0 || lua_type(L, -2) != LUA_TSTRING) return 0;
  lua_pushvalue(L, -2);
  lua_rawget(L, strings);
  named = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return named;
}

static void clean(lua_State *L, int t, void *null, int depth, int strings) {
  if (depth > VG_MAX_DEPTH) return;
  luaL_checkstack(L, 4, "JSON too deeply nested");
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    int vt = lua_type(L, -1);
    if ((vt == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == null) ||
        (vt != LUA_TSTRING && must_be_text(L, strings))) {
      if (lua_type(L, -2) == LUA_TSTRING) { /* clearing a field while traversing is allowed */
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_rawset(L, t);
      }
    } else if (vt == LUA_TTABLE) {
      clean(L, lua_gettop(L), null, depth + 1, 0);
#if VG_HAS_INTEGERS
    } else if (vt == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number d = lua_tonumber(L, -1);
      if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)d);
        lua_rawset(L, t);
      }
#endif
    }
    lua_pop(L, 1);
  }
}

/* decode(text [, strings]) -> value, or nil, message. `strings`: a set of
   names; a field of the top-level object named there whose value is not a
   string is dropped. Upvalues: cjson.safe decode, null. */
static int json_decode(lua_State *L) {
  size_t n, qn = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  int strings = lua_isnoneornil(L, 2) ? 0 : 2;
  char *quoted;
  if (strings) luaL_checktype(L, 2, LUA_TTABLE);
  quoted = quote_big_integers(s, n, &qn);
  lua_pushvalue(L, lua_upvalueindex(1));
  if (quoted != NULL) {
    lua_pushlstring(L, quoted, qn);
    free(quoted);
  } else {
    lua_pushvalue(L, 1);
  }
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2)) return 2; /* nil, cjson's message */
  lua_pop(L, 1);
  if (lua_istable(L, -1)) clean(L, lua_gettop(L), lua_touserdata(L, lua_upvalueindex(2)), 0, strings);
#if VG_HAS_INTEGERS
  else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
    lua_Number d = lua_tonumber(L, -1);
    if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)d);
    }
  }
#endif
  return 1;
}

/* Pushes the decode closure; leaves cjson.null in the library table too.
   Expects the library table at -1. */
int vg_json_open(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson.safe");
  lua_call(L, 1, 1);               /* raises if lua-cjson is missing: a clear message */
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);               /* an instance of our own: nobody else's settings */
  lua_getfield(L, -1, "decode_max_depth");
  lua_pushinteger(L, VG_MAX_DEPTH);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "decode");
  lua_getfield(L, -3, "null");
  lua_pushvalue(L, -1);
  lua_setfield(L, -6, "null");     /* core.null */
  lua_pushcclosure(L, json_decode, 2);
  lua_setfield(L, -4, "decode");   /* core.decode */
  lua_pop(L, 2);
  return 0;
}
