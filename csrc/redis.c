/*
 * redis.c: a blocking Redis connection (hiredis), for the shared batch
 * journal of a fleet (lua/viggle/journal_redis.lua). Mechanism only: one
 * command in, one reply out; URLs, AUTH, scripts, retries and reconnects are
 * the Lua layer's.
 *
 *   core.redis_connect(host, port, timeout) -> conn | nil, msg, code
 *   conn:command(arg, ...) -> reply | nil, msg, code
 *   conn:close()            (also __gc and __close)
 *
 * Replies: a bulk or status string as a string, an integer as a number, a
 * nil as false, an array as a table (its nils as false). Failures: code
 * "reply" (Redis answered an error: msg is its text, the connection stays
 * usable), "io" (unreachable, timed out, connection lost: the connection is
 * closed and every later command answers the same), "protocol".
 * Each call blocks for at most `timeout` seconds per read or write.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "vg.h"

#define REDIS_MT "viggle.core.redis"
#define REDIS_MAX_DEPTH 8 /* nested arrays in one reply (ours nest 2 deep) */

typedef struct vg_redis {
  redisContext *ctx;     /* NULL when closed (or never opened) */
  redisReply *pending;   /* a reply being converted: freed if conversion raises */
  int lost;              /* the connection failed: commands answer `lost_msg` */
  char lost_msg[128];
} vg_redis;

static vg_redis *checkredis(lua_State *L) {
  vg_redis *r = luaL_checkudata(L, 1, REDIS_MT);
  if (r->ctx == NULL && !r->lost) luaL_argerror(L, 1, "redis connection is closed");
  return r;
}

static void drop_pending(vg_redis *r) {
  if (r->pending != NULL) {
    freeReplyObject(r->pending);
    r->pending = NULL;
  }
}

/* One function ends a connection: close, __gc, __close, and a failure. */
static void redis_end(vg_redis *r) {
  drop_pending(r);
  if (r->ctx != NULL) {
    redisFree(r->ctx);
    r->ctx = NULL;
  }
}

static int redis_close(lua_State *L) {
  vg_redis *r = luaL_checkudata(L, 1, REDIS_MT);
  redis_end(r);
  r->lost = 0;
  return 0;
}

static const char *err_code(int err) {
  return err == REDIS_ERR_PROTOCOL ? "protocol" : "io";
}

/* The connection failed: remember why, close it, push nil, msg, code. */
static int redis_lost(lua_State *L, vg_redis *r) {
  const char *code = err_code(r->ctx->err);
  strncpy(r->lost_msg, r->ctx->errstr[0] ? r->ctx->errstr : "connection lost", sizeof r->lost_msg - 1);
  r->lost_msg[sizeof r->lost_msg - 1] = '\0';
  r->lost = 1;
  redis_end(r);
  lua_pushnil(L);
  lua_pushstring(L, r->lost_msg);
  lua_pushstring(L, code);
  return 3;
}

static void push_reply(lua_State *L, const redisReply *rep, int depth) {
  size_t i;
  luaL_checkstack(L, 3, "redis reply too deep");
  switch (rep->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR: /* inside an array (EXEC) */
      lua_pushlstring(L, rep->str, rep->len);
      break;
    case REDIS_REPLY_INTEGER:
      lua_pushinteger(L, (lua_Integer)rep->integer);
      break;
    case REDIS_REPLY_ARRAY:
      if (depth >= REDIS_MAX_DEPTH) luaL_error(L, "redis reply nested deeper than %d", REDIS_MAX_DEPTH);
      lua_createtable(L, (int)rep->elements, 0);
      for (i = 0; i < rep->elements; i++) {
        push_reply(L, rep->element[i], depth + 1);
        lua_rawseti(L, -2, (int)i + 1);
      }
      break;
    default: /* REDIS_REPLY_NIL */
      lua_pushboolean(L, 0);
      break;
  }
}

/* conn:command(arg, ...): every argument a string or a number. */
static int redis_command(lua_State *L) {
  vg_redis *r = checkredis(L);
  int argc = lua_gettop(L) - 1, i;
  const char **argv;
  size_t *argvlen;
  redisReply *rep;
  struct sigaction ign, old;
  if (argc < 1) return luaL_error(L, "bad argument #1 to 'command' (a command name expected)");
  if (r->lost) {
    lua_pushnil(L);
    lua_pushstring(L, r->lost_msg);
    lua_pushliteral(L, "io");
    return 3;
  }
  /* scratch memory in userdata: a raising argument check leaks nothing */
  argv = lua_newuserdata(L, (size_t)argc * sizeof *argv);
  argvlen = lua_newuserdata(L, (size_t)argc * sizeof *argvlen);
  for (i = 0; i < argc; i++) argv[i] = luaL_checklstring(L, i + 2, &argvlen[i]);
  drop_pending(r);
  /* A write to a connection Redis closed raises SIGPIPE, whose default ends
     the process: ignored for the call, as libcurl does around its own. */
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGPIPE, &ign, &old);
  rep = redisCommandArgv(r->ctx, argc, argv, argvlen);
  sigaction(SIGPIPE, &old, NULL);
  if (rep == NULL) return redis_lost(L, r);
  r->pending = rep;
  if (rep->type == REDIS_REPLY_ERROR) {
    lua_pushnil(L);
    lua_pushlstring(L, rep->str, rep->len);
    lua_pushliteral(L, "reply");
    drop_pending(r);
    return 3;
  }
  push_reply(L, rep, 0);
  drop_pending(r);
  return 1;
}

static int redis_tostring(lua_State *L) {
  vg_redis *r = luaL_checkudata(L, 1, REDIS_MT);
  if (r->ctx == NULL) lua_pushfstring(L, "viggle.core.redis (%s)", r->lost ? "lost" : "closed");
  else lua_pushfstring(L, "viggle.core.redis (%p)", (void *)r);
  return 1;
}

static const luaL_Reg redis_methods[] = {
  {"command", redis_command},
  {"close", redis_close},
  {NULL, NULL}
};

static const luaL_Reg redis_meta[] = {
  {"__gc", redis_close},
  {"__close", redis_close},
  {"__tostring", redis_tostring},
  {NULL, NULL}
};

static struct timeval to_timeval(double s) {
  struct timeval tv;
  if (s < 0.001) s = 0.001;
  tv.tv_sec = (time_t)s;
  tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
  return tv;
}

/* core.redis_connect(host, port, timeout): connects (at most `timeout`
   seconds, also the limit of each later read or write). */
int vg_redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Number port = luaL_checknumber(L, 2);
  double timeout = luaL_optnumber(L, 3, 5);
  struct timeval tv = to_timeval(timeout);
  vg_redis *r;
  redisContext *ctx;
  luaL_argcheck(L, port >= 1 && port <= 65535, 2, "port out of range");
  luaL_argcheck(L, timeout > 0, 3, "timeout must be positive");
  /* closed first: safe to collect at every instant */
  r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  if (luaL_newmetatable(L, REDIS_MT)) {
    vg_setfuncs(L, redis_meta, 0);
    lua_newtable(L);
    vg_setfuncs(L, redis_methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  ctx = redisConnectWithTimeout(host, (int)port, tv);
  if (ctx == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    lua_pushliteral(L, "io");
    return 3;
  }
  r->ctx = ctx;
  if (ctx->err) {
    lua_pushnil(L);
    lua_pushstring(L, ctx->errstr);
    lua_pushstring(L, err_code(ctx->err));
    redis_end(r);
    return 3;
  }
  if (redisSetTimeout(ctx, tv) != REDIS_OK) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot set the timeout");
    lua_pushliteral(L, "io");
    redis_end(r);
    return 3;
  }
  return 1;
}
