/*
 * multi.c: the non-blocking driver, a userdata around a libcurl multi handle.
 *
 * Two ways to drive it, chosen when it is made:
 *  - perform/poll (the default): m:perform() advances every transfer without
 *    blocking, m:poll(t) sleeps until there is something to do;
 *  - sockets (for hosts with their own loop): the socket and timer callbacks
 *    only record what libcurl wants watched; Lua reads it with m:changes() and
 *    m:timer() after the call returns and calls m:socket_action(fd, events).
 *  - thread (worker.c): a thread of the C core drives the transfers; m:perform()
 *    only collects what finished, m:poll(t) waits for that, m:fd() is a file
 *    descriptor readable while results wait (for host loops to watch).
 * Every request in flight is anchored by a registry reference until it
 * finishes, so it cannot be collected mid-transfer: request.c makes and drops
 * it (vg_request_attach, vg_request_detach); this file never does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vg.h"

static vg_multi *checkmulti(lua_State *L, int idx) {
  vg_multi *m = luaL_checkudata(L, idx, VG_MULTI_MT);
  if (m->multi == NULL) luaL_argerror(L, idx, "multi is closed");
  return m;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
  vg_multi *m = ud;
  (void)easy;
  (void)sockp;
  if (m->nchanges == m->capchanges) {
    size_t cap = m->capchanges ? m->capchanges * 2 : 16;
    vg_sockchange *c = realloc(m->changes, cap * sizeof *c);
    if (c == NULL) return -1;
    m->changes = c;
    m->capchanges = cap;
  }
  m->changes[m->nchanges].fd = fd;
  m->changes[m->nchanges].what = what;
  m->nchanges++;
  return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
  vg_multi *m = ud;
  (void)multi;
  m->timer_ms = timeout_ms;
  m->timer_changed = 1;
  return 0;
}

int vg_multi_new(lua_State *L) {
  vg_multi *m;
  int opts = lua_istable(L, 1);
  long max_host = 0, max_total = 0, max_connects = 0;
  int sockets = 0, thread = 0;
  if (opts) {
    lua_getfield(L, 1, "max_host_connections");
    max_host = (long)luaL_optnumber(L, -1, 0);
    lua_getfield(L, 1, "max_total_connections");
    max_total = (long)luaL_optnumber(L, -1, 0);
    lua_getfield(L, 1, "max_connects");
    max_connects = (long)luaL_optnumber(L, -1, 0);
    lua_getfield(L, 1, "sockets");
    sockets = lua_toboolean(L, -1);
    lua_getfield(L, 1, "thread");
    thread = lua_toboolean(L, -1);
    lua_pop(L, 5);
  }
  m = lua_newuserdata(L, sizeof *m);
  memset(m, 0, sizeof *m);
  m->timer_ms = -1;
  luaL_getmetatable(L, VG_MULTI_MT);
  lua_setmetatable(L, -2);
  m->multi = curl_multi_init();
  if (m->multi == NULL) return vg_fail(L, "curl_multi_init failed", "OUT_OF_MEMORY");
  curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  m->max_host = max_host;
  if (max_host > 0) curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host);
  if (max_total > 0) curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total);
  /* libcurl's default cache is 4 connections per handle in the multi at the
     moment; between polling rounds few are in it, and the connections just
     used would be closed. Keep a fixed number alive instead. */
  m->max_connects = max_connects > 0 ? max_connects : 256L;
  curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, m->max_connects);
  if (thread) { /* the thread itself starts with the first transfer */
    m->worker = vg_worker_new(m->multi);
    if (m->worker == NULL) return vg_fail(L, "cannot make the transfer thread's pipe", "OUT_OF_MEMORY");
  } else if (sockets) {
    m->socket_mode = 1;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, (void *)m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, (void *)m);
  }
  return 1;
}

/* m:add(req): starts a set-up request. */
static int multi_add(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  vg_request *r = vg_checkrequest(L, 2);
  CURLMcode rc;
  if (r->state != VG_READY) return luaL_argerror(L, 2, "request is not set up, or already in flight");
  if (m->worker != NULL) {
    int en = vg_worker_add(m->worker, r);
    if (en == ECHILD)
      return vg_fail(L, "this multi's transfer thread belongs to another process (made before a fork)", "MULTI_ERROR");
    if (en != 0) return vg_fail(L, "cannot start the transfer thread", "MULTI_ERROR");
    vg_request_attach(L, r, m, 2);
    lua_pushboolean(L, 1);
    return 1;
  }
  rc = curl_multi_add_handle(m->multi, r->easy);
  if (rc != CURLM_OK) return vg_fail(L, curl_multi_strerror(rc), "MULTI_ERROR");
  vg_request_attach(L, r, m, 2);
  lua_pushboolean(L, 1);
  return 1;
}

/* Appends one transfer the thread finished to the table on top (made by
   the first one), and ends it. */
typedef struct vg_collect {
  lua_State *L;
  int n;
} vg_collect;

static void collect_one(vg_request *r, CURLcode result, void *ud) {
  vg_collect *c = ud;
  if (c->n == 0) lua_newtable(c->L);
  lua_rawgeti(c->L, LUA_REGISTRYINDEX, r->anchor); /* the request, before its anchor goes */
  lua_rawseti(c->L, -2, ++c->n);
  vg_request_detach(c->L, r, result);
}

/* Collects finished transfers into a new table (or nil when none). */
static int push_finished(lua_State *L, vg_multi *m) {
  CURLMsg *msg;
  int left, n = 0;
  if (m->worker != NULL) {
    vg_collect c;
    c.L = L;
    c.n = 0;
    lua_checkstack(L, 4);
    vg_worker_collect(m->worker, collect_one, &c);
    if (c.n == 0) lua_pushnil(L);
    return c.n;
  }
  while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
    vg_request *r = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r == NULL || r->multi != m) continue;
    if (n == 0) lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->anchor); /* the request, before its anchor goes */
    lua_rawseti(L, -2, ++n);
    vg_request_detach(L, r, msg->data.result); /* msg is invalid after this */
  }
  if (n == 0) lua_pushnil(L);
  return n;
}

static int multi_failed(lua_State *L, CURLMcode rc) {
  return luaL_error(L, "libcurl multi: %s", curl_multi_strerror(rc));
}

/* m:perform() -> running, finished (a list of requests, or nil). */
static int multi_perform(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  int running = 0;
  CURLMcode rc;
  if (m->socket_mode) return luaL_argerror(L, 1, "this multi is driven by socket_action");
  if (m->worker != NULL) { /* the thread performs: collect only */
    lua_pushinteger(L, m->count);
    push_finished(L, m);
    return 2;
  }
  rc = curl_multi_perform(m->multi, &running);
  if (rc != CURLM_OK) return multi_failed(L, rc);
  lua_pushinteger(L, running);
  push_finished(L, m);
  return 2;
}

/* m:poll(seconds) -> waits until a transfer can move, or the time passes. */
static int multi_poll(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  double t = luaL_optnumber(L, 2, 1.0);
  int numfds = 0;
  CURLMcode rc;
  if (t < 0) t = 0;
  if (t > 86400) t = 86400;
  if (m->worker != NULL) {
    lua_pushinteger(L, vg_worker_wait(m->worker, (int)(t * 1000.0 + 0.5)));
    return 1;
  }
  rc = curl_multi_poll(m->multi, NULL, 0, (int)(t * 1000.0 + 0.5), &numfds);
  if (rc != CURLM_OK) return multi_failed(L, rc);
  lua_pushinteger(L, numfds);
  return 1;
}

/* m:timeout() -> seconds until libcurl wants to be called, or nil. */
static int multi_timeout(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  long ms = -1;
  if (m->worker == NULL) curl_multi_timeout(m->multi, &ms); /* a thread keeps its own time */
  if (ms < 0) lua_pushnil(L); else lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 1;
}

/* m:socket_action(fd, events) -> running, finished. fd -1 = the timer;
   events is a string made of "r", "w", "e". */
static int multi_socket_action(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  lua_Integer fd = luaL_checkinteger(L, 2);
  const char *ev = luaL_optstring(L, 3, "");
  int mask = 0, running = 0;
  CURLMcode rc;
  if (!m->socket_mode) return luaL_argerror(L, 1, "this multi is not driven by socket_action");
  if (strchr(ev, 'r')) mask |= CURL_CSELECT_IN;
  if (strchr(ev, 'w')) mask |= CURL_CSELECT_OUT;
  if (strchr(ev, 'e')) mask |= CURL_CSELECT_ERR;
  rc = curl_multi_socket_action(m->multi, fd < 0 ? CURL_SOCKET_TIMEOUT : (curl_socket_t)fd,
                                mask, &running);
  if (rc != CURLM_OK) return multi_failed(L, rc);
  lua_pushinteger(L, running);
  push_finished(L, m);
  return 2;
}

/* m:changes() -> {fd, what, fd, what, ...} recorded since the last call
   (what: "r", "w", "rw" or "remove"), or nil. */
static int multi_changes(lua_State *L) {
  static const char *const names[] = {"none", "r", "w", "rw", "remove"};
  vg_multi *m = checkmulti(L, 1);
  size_t i;
  if (m->nchanges == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, (int)(m->nchanges * 2), 0);
  for (i = 0; i < m->nchanges; i++) {
    int what = m->changes[i].what;
    lua_pushinteger(L, (lua_Integer)m->changes[i].fd);
    lua_rawseti(L, -2, (int)(2 * i + 1));
    lua_pushstring(L, names[what >= 0 && what <= 4 ? what : 0]);
    lua_rawseti(L, -2, (int)(2 * i + 2));
  }
  m->nchanges = 0;
  return 1;
}

/* m:timer() -> changed (boolean), seconds (or nil: no timer wanted). */
static int multi_timer(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  lua_pushboolean(L, m->timer_changed);
  if (m->timer_ms < 0) lua_pushnil(L); else lua_pushnumber(L, (lua_Number)m->timer_ms / 1000.0);
  m->timer_changed = 0;
  return 2;
}

/* m:remove(req): abandons a transfer; the request ends with code ABORTED. */
static int multi_remove(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  vg_request *r = vg_checkrequest(L, 2);
  if (r->multi == m) vg_request_detach(L, r, CURLE_ABORTED_BY_CALLBACK);
  return 0;
}

/* m:keep_connections(n): keep at least n idle connections alive (the
   connection cache only grows: a burst of n transfers can reuse them all). */
static int multi_keep_connections(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  if (n > m->max_connects) {
    m->max_connects = (long)n;
    if (m->worker != NULL) vg_worker_set(m->worker, m->max_connects, -1);
    else curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, m->max_connects);
  }
  return 0;
}

/* m:max_host_connections([n]) -> the cap on connections to one host (0:
   none); with n, sets it (transfers over the cap queue). */
static int multi_max_host_connections(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer n = luaL_checkinteger(L, 2);
    m->max_host = n > 0 ? (long)n : 0L;
    if (m->worker != NULL) vg_worker_set(m->worker, -1, m->max_host);
    else curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, m->max_host);
  }
  lua_pushinteger(L, (lua_Integer)m->max_host);
  return 1;
}

/* m:fd() -> a file descriptor readable while finished transfers wait to be
   collected (a thread multi), or nil. */
static int multi_fd(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  if (m->worker == NULL) lua_pushnil(L); else lua_pushinteger(L, vg_worker_fd(m->worker));
  return 1;
}

static int multi_count(lua_State *L) {
  vg_multi *m = checkmulti(L, 1);
  lua_pushinteger(L, m->count);
  return 1;
}

/* One close serves close, __gc and __close: every request still in flight
   is detached (it ends as ABORTED) before the multi handle goes. */
static int multi_close(lua_State *L) {
  vg_multi *m = luaL_checkudata(L, 1, VG_MULTI_MT);
  /* The thread goes first: then every handle is this thread's to remove. */
  vg_worker_free(m->worker);
  m->worker = NULL;
  while (m->head != NULL) vg_request_detach(L, m->head, CURLE_ABORTED_BY_CALLBACK);
  if (m->multi != NULL) {
    curl_multi_cleanup(m->multi);
    m->multi = NULL;
  }
  free(m->changes);
  m->changes = NULL;
  m->nchanges = m->capchanges = 0;
  return 0;
}

static int multi_tostring(lua_State *L) {
  vg_multi *m = luaL_checkudata(L, 1, VG_MULTI_MT);
  lua_pushfstring(L, "viggle.core.multi (%p)", (void *)m);
  return 1;
}

static const luaL_Reg multi_methods[] = {
  {"add", multi_add},
  {"perform", multi_perform},
  {"poll", multi_poll},
  {"timeout", multi_timeout},
  {"socket_action", multi_socket_action},
  {"changes", multi_changes},
  {"timer", multi_timer},
  {"remove", multi_remove},
  {"count", multi_count},
  {"fd", multi_fd},
  {"keep_connections", multi_keep_connections},
  {"max_host_connections", multi_max_host_connections},
  {"close", multi_close},
  {NULL, NULL}
};

static const luaL_Reg multi_meta[] = {
  {"__gc", multi_close},
  {"__close", multi_close},
  {"__tostring", multi_tostring},
  {NULL, NULL}
};

void vg_multi_open(lua_State *L) {
  luaL_newmetatable(L, VG_MULTI_MT);
  vg_setfuncs(L, multi_meta, 0);
  lua_newtable(L);
  vg_setfuncs(L, multi_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
