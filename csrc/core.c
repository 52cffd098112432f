/*
 * core.c: luaopen_viggle_core, the clock and the sleep.
 * The module is mechanism only: HTTP transfers (request.c, multi.c) and JSON
 * decoding (json.c). Policy lives in the Lua layer (lua/viggle/).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vg.h"

/* core.now() -> seconds on a monotonic clock (never jumps with the wall). */
static int core_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.wall() -> seconds since the epoch, to the nanosecond. os.time() is
   whole seconds from a coarse clock that may lag a few milliseconds, enough
   to read an HTTP date (Retry-After) a second late at a second's edge. */
static int core_wall(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.thread_cpu() -> CPU seconds the calling thread has used: what a step
   of the scheduler costs, whatever else the machine runs meanwhile. */
static int core_thread_cpu(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): a signal (Ctrl-C) ends it early, so the interpreter's
   own interrupt handling gets its turn. */
static int core_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  struct timespec ts;
  if (s <= 0) return 0;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
  return 0;
}

/* core.isatty(fd) -> true when fd (1: stdout, 2: stderr) is a terminal. */
static int core_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)) == 1);
  return 1;
}

/* core.file_kind(path) -> "file", "directory", "fifo", "char", "block",
   "socket" or "other" (stat(2), links followed; nothing is opened, so a FIFO
   never blocks), or nil, message when there is nothing there. */
static int core_file_kind(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory"
                  : S_ISFIFO(st.st_mode) ? "fifo" : S_ISCHR(st.st_mode) ? "char"
                  : S_ISBLK(st.st_mode) ? "block" : S_ISSOCK(st.st_mode) ? "socket" : "other");
  return 1;
}

static const luaL_Reg core_funcs[] = {
  {"file_kind", core_file_kind},
  {"isatty", core_isatty},
  {"request", vg_request_new},
  {"multi", vg_multi_new},
  {"open_part", vg_part_new},
  {"now", core_now},
  {"redis_connect", vg_redis_connect},
  {"sleep", core_sleep},
  {"thread_cpu", core_thread_cpu},
  {"wall", core_wall},
  {NULL, NULL}
};

int luaopen_viggle_core(lua_State *L) {
  const curl_version_info_data *v;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return luaL_error(L, "curl_global_init failed");
  v = curl_version_info(CURLVERSION_NOW);
  if (v->version_num < 0x075500) /* CURLOPT_PROTOCOLS_STR */
    return luaL_error(L, "viggle.core needs libcurl 7.85 or newer (found %s)", v->version);
  vg_request_open(L);
  vg_multi_open(L);
  vg_part_open(L);
  lua_newtable(L);
  vg_setfuncs(L, core_funcs, 0);
  vg_json_open(L);
  lua_pushliteral(L, VG_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, v->version);
  lua_setfield(L, -2, "curl_version");
  lua_pushstring(L, v->ssl_version ? v->ssl_version : "none");
  lua_setfield(L, -2, "ssl_version");
  lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
  lua_setfield(L, -2, "http2");
  return 1;
}
