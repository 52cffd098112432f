/*
 * request.c: the request object, a userdata around one libcurl easy handle.
 *
 * The handle is reused from request to request (setup resets its options but
 * keeps its connection cache), so sequential calls stay on one connection.
 * libcurl callbacks here only move bytes into C-owned buffers or a file;
 * no Lua runs inside them (docs: "No Lua runs inside a libcurl callback").
 * A request's membership of a multi is kept here, in one pair of functions
 * (vg_request_attach, vg_request_detach), as luv keeps a handle's reference.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "vg.h"

#define VG_DEFAULT_MAX_BODY (8u * 1024u * 1024u)
#define VG_ERROR_BODY_CAP (64u * 1024u) /* kept from a failed download */
#define VG_HEAD_CAP (256u * 1024u)      /* the largest header block kept */
#define VG_BUF_KEEP (256u * 1024u)      /* larger buffers are freed between uses */

/* ---- libcurl callbacks: bytes into buffers, nothing else ---------------- */

/* The value of header `name` in the kept block (the last response's), or
   NULL; *n is its length. */
static const char *header_value(const vg_buf *h, const char *name, size_t *n) {
  size_t k = strlen(name);
  const char *p = h->data, *end;
  if (p == NULL) return NULL;
  end = p + h->len;
  while (p != NULL && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *ve = eol ? eol : end;
    if ((size_t)(ve - p) > k && p[k] == ':' && strncasecmp(p, name, k) == 0) {
      const char *v = p + k + 1;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      *n = (size_t)(ve - v);
      return v;
    }
    p = eol ? eol + 1 : NULL;
  }
  return NULL;
}

/* The first body bytes of a 2xx answer to a download. A 206 must start
   where we asked; anything else is the whole file: the .part starts again
   from zero, recording the validator these bytes come with first. */
static int start_file(vg_request *r, long code) {
  size_t n = 0;
  const char *v;
  if (code == 206) {
    curl_off_t start = 0;
    size_t i = 6;
    v = header_value(&r->head, "content-range", &n);
    if (v == NULL || n < 7 || strncasecmp(v, "bytes ", 6) != 0) i = n; /* no start: bad */
    for (; i < n && v[i] >= '0' && v[i] <= '9' && start <= r->range_from; i++)
      start = start * 10 + (v[i] - '0'); /* the buffer has no NUL: no strtoll */
    if (v == NULL || i == 6 || i >= n || v[i] != '-' || start != r->range_from) {
      r->range_bad = 1;
      return -1;
    }
    return 0;
  }
  v = header_value(&r->head, "etag", &n);
  if (v != NULL && n >= 2 && v[0] == 'W' && v[1] == '/') v = NULL; /* weak: If-Range cannot use it */
  if (v == NULL) v = header_value(&r->head, "last-modified", &n);
  r->write_errno = vg_part_restart(r->out, r->out_meta, v, v ? n : 0);
  return r->write_errno ? -1 : 0;
}

static size_t write_file(vg_request *r, const char *p, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(r->out, p + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      r->write_errno = w < 0 ? errno : EIO;
      return 0;
    }
    done += (size_t)w;
  }
  r->written += (curl_off_t)len;
  return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  vg_request *r = ud;
  size_t len = size * n, cap = r->max_body;
  r->body_started = 1;
  if (r->out >= 0) {
    if (r->body_to_file < 0) { /* once per response, not per chunk */
      long code = 0;
      curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
      r->body_to_file = code >= 200 && code < 300;
      if (r->body_to_file && start_file(r, code) != 0) return 0;
    }
    if (r->body_to_file) return write_file(r, p, len);
    cap = VG_ERROR_BODY_CAP; /* an error page: keep its start for the message */
  }
  if (cap && r->body.len + len > cap) {
    if (r->out >= 0) return len; /* drop the rest of an error page */
    r->too_large = 1;
    return 0;
  }
  if (vg_buf_append(&r->body, p, len) != 0) {
    r->write_errno = ENOMEM;
    return 0;
  }
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  vg_request *r = ud;
  size_t len = size * n;
  /* A new status line starts a new response (redirect, 100-continue):
     only the last response's headers are kept. */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    r->head.len = 0;
    r->body_to_file = -1;
    r->body_started = 0;
  }
  if (r->head.len + len > VG_HEAD_CAP) { /* absurd header block */
    r->head_too_large = 1;
    return 0;
  }
  if (vg_buf_append(&r->head, p, len) != 0) return 0;
  return len;
}

static double monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stall check: no byte moved either way for stall_limit seconds ends
   the transfer. libcurl's own check averages over seconds and cannot see
   a sub-second limit; its 1 s speed-check timer is what wakes us here. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  vg_request *r = ud;
  double now;
  vg_worker_store_progress(r, dlnow, dltotal, ulnow, ultotal); /* for a worker's request */
  if (r->stall_limit <= 0) return 0;
  now = monotonic();
  if (r->moved_at == 0 || dlnow + ulnow != r->moved) {
    r->moved = dlnow + ulnow;
    r->moved_at = now;
  } else if (now - r->moved_at >= r->stall_limit) {
    r->stalled = 1;
    return 1;
  }
  return 0;
}

/* Progress reports on or off (a worker's request: its counters). With a
   stall check they stay on. */
void vg_request_report_progress(vg_request *r, int on) {
  if (on) {
    curl_easy_setopt(r->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(r->easy, CURLOPT_XFERINFODATA, (void *)r);
  }
  curl_easy_setopt(r->easy, CURLOPT_NOPROGRESS, on || r->stall_limit > 0 ? 0L : 1L);
}

/* ---- life: made, in a multi or not, finished, closed -------------------- */

vg_request *vg_checkrequest(lua_State *L, int idx) {
  vg_request *r = luaL_checkudata(L, idx, VG_REQUEST_MT);
  if (r->easy == NULL) luaL_argerror(L, idx, "request is closed");
  return r;
}

static void close_output(vg_request *r) {
  free(r->out_meta);
  r->out_meta = NULL;
  if (r->out < 0) return;
  if (close(r->out) != 0 && r->write_errno == 0) r->write_errno = errno;
  r->out = -1;
}

static void drop_form(vg_request *r) {
  if (r->mime == NULL) return;
  curl_easy_setopt(r->easy, CURLOPT_MIMEPOST, (curl_mime *)NULL);
  curl_mime_free(r->mime); /* closes the upload files now, not at the next setup */
  r->mime = NULL;
}

static void drop_headers(vg_request *r) {
  if (r->headers == NULL) return;
  curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  curl_slist_free_all(r->headers);
  r->headers = NULL;
}

/* Lets go of what one transfer held: the output file, headers, the form. */
static void request_release(vg_request *r) {
  close_output(r);
  drop_form(r);
  drop_headers(r);
}

/* True when the kept header block does not end with its blank line: libcurl
   7.88 takes a connection closed in the middle of the headers for the end of
   an answer (status 200, no error), which is no answer at all. */
static int head_unfinished(const vg_buf *h) {
  const char *d = h->data;
  size_t n = h->len;
  if (n == 0) return 0;
  if (d[n - 1] != '\n') return 1;
  return !(n == 1 || d[n - 2] == '\n' || (n >= 3 && d[n - 2] == '\r' && d[n - 3] == '\n') ||
           (n == 2 && d[0] == '\r'));
}

/* A transfer ends (the blocking perform, or the way out of a multi). */
static void request_finish(vg_request *r, CURLcode result) {
  r->head_cut = result == CURLE_OK && head_unfinished(&r->head);
  r->result = result;
  r->state = VG_DONE;
  close_output(r);
  drop_form(r);
}

void vg_request_attach(lua_State *L, vg_request *r, vg_multi *m, int idx) {
  lua_pushvalue(L, idx);
  r->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  r->multi = m;
  r->state = VG_RUNNING;
  r->prev = NULL;
  r->next = m->head;
  if (m->head != NULL) m->head->prev = r;
  m->head = r;
  m->count++;
}

void vg_request_detach(lua_State *L, vg_request *r, CURLcode result) {
  vg_multi *m = r->multi;
  if (m == NULL) return;
  if (m->worker != NULL) vg_worker_remove(m->worker, r); /* the thread lets go first */
  else if (m->multi != NULL) curl_multi_remove_handle(m->multi, r->easy);
  if (r->prev != NULL) r->prev->next = r->next; else m->head = r->next;
  if (r->next != NULL) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  r->multi = NULL;
  m->count--;
  request_finish(r, result);
  luaL_unref(L, LUA_REGISTRYINDEX, r->anchor);
  r->anchor = LUA_NOREF;
}

int vg_request_new(lua_State *L) {
  /* The userdata is made in a safe, closed state before anything is
     acquired, so a failure below leaves nothing for __gc to trip on. */
  vg_request *r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  r->anchor = LUA_NOREF;
  r->out = -1;
  r->state = VG_CLOSED;
  luaL_getmetatable(L, VG_REQUEST_MT);
  lua_setmetatable(L, -2);
  r->easy = curl_easy_init();
  if (r->easy == NULL) return vg_fail(L, "curl_easy_init failed", "OUT_OF_MEMORY");
  r->state = VG_IDLE;
  return 1;
}

/* ---- setup: read the options, then the fast path or the full one ------- */

/* What req:setup(opts) was asked for. Strings stay alive: opts holds them. */
typedef struct setup_opts {
  const char *url, *method, *body, *ca_file, *ua;
  vg_part *output;          /* from core.open_part */
  size_t body_len;
  double timeout, connect_timeout, resume_from, low_speed_time, max_body;
  int verify, follow, fresh, form, headers;
} setup_opts;

static const char *opt_string(lua_State *L, int t, const char *k, size_t *len) {
  const char *s = NULL;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", k);
    s = lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1); /* the string stays alive: the options table holds it */
  return s;
}

static double opt_number(lua_State *L, int t, const char *k, double def) {
  double v = def;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "option '%s' must be a number", k);
    v = lua_tonumber(L, -1);
    if (!isfinite(v)) luaL_error(L, "option '%s' must be a finite number", k);
    if (v < 0) luaL_error(L, "option '%s' must not be negative", k);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int def) {
  int v = def;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1)) luaL_error(L, "option '%s' must be a boolean", k);
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_table(lua_State *L, int t, const char *k) {
  int given;
  lua_getfield(L, t, k);
  given = !lua_isnil(L, -1);
  if (given && !lua_istable(L, -1)) luaL_error(L, "option '%s' must be a table", k);
  lua_pop(L, 1);
  return given;
}

static void read_options(lua_State *L, int t, setup_opts *o) {
  o->url = opt_string(L, t, "url", NULL);
  if (o->url == NULL) luaL_argerror(L, t, "option 'url' is required");
  o->method = opt_string(L, t, "method", NULL);
  o->body = opt_string(L, t, "body", &o->body_len);
  lua_getfield(L, t, "output");
  o->output = lua_isnil(L, -1) ? NULL : vg_checkpart(L, lua_gettop(L));
  lua_pop(L, 1);
  o->ca_file = opt_string(L, t, "ca_file", NULL);
  o->ua = opt_string(L, t, "user_agent", NULL);
  o->timeout = opt_number(L, t, "timeout", 0);
  o->connect_timeout = opt_number(L, t, "connect_timeout", 0);
  o->resume_from = opt_number(L, t, "resume_from", 0);
  o->low_speed_time = opt_number(L, t, "low_speed_time", 0);
  o->max_body = opt_number(L, t, "max_body", VG_DEFAULT_MAX_BODY);
  o->verify = opt_bool(L, t, "verify", 1);
  o->follow = opt_bool(L, t, "follow", 1);
  o->fresh = opt_bool(L, t, "fresh_connect", 0);
  o->form = opt_table(L, t, "form");
  o->headers = opt_table(L, t, "headers");
}

/* Seconds -> milliseconds for libcurl: 0 stays "none", anything above 0 is
   at least 1 ms, and no value wraps past what a long holds. */
static long to_ms(double seconds) {
  double ms = ceil(seconds * 1000.0);
  if (ms > 2147483647.0) ms = 2147483647.0;
  return (long)ms;
}

/* libcurl's stall check counts whole seconds, and 0 turns it off: a
   sub-second limit is rounded up, never down to "no limit". */
static long to_whole_seconds(double seconds) {
  double s = ceil(seconds);
  if (s > 2147483647.0) s = 2147483647.0;
  return (long)s;
}

static size_t to_size(double v) {
  return v >= (double)SIZE_MAX ? SIZE_MAX : (size_t)v;
}

static curl_off_t to_off(size_t v) {
  const curl_off_t max = CURL_OFF_T_C(0x7fffffffffffffff);
  return v > (size_t)max ? max : (curl_off_t)v;
}

static CURLcode setup_form(lua_State *L, vg_request *r, int t) {
  size_t i, n = vg_rawlen(L, t);
  r->mime = curl_mime_init(r->easy);
  if (r->mime == NULL) return CURLE_OUT_OF_MEMORY;
  for (i = 1; i <= n; i++) {
    curl_mimepart *part;
    const char *name, *value, *file, *filename, *type;
    size_t len = 0;
    CURLcode rc;
    lua_rawgeti(L, t, (int)i);
    if (!lua_istable(L, -1)) luaL_error(L, "form part %d must be a table", (int)i);
    name = opt_string(L, -1, "name", NULL);
    value = opt_string(L, -1, "value", &len);
    file = opt_string(L, -1, "file", NULL);
    filename = opt_string(L, -1, "filename", NULL);
    type = opt_string(L, -1, "type", NULL);
    if (name == NULL || (value == NULL) == (file == NULL))
      luaL_error(L, "form part %d needs a name and exactly one of value, file", (int)i);
    part = curl_mime_addpart(r->mime);
    if (part == NULL) return CURLE_OUT_OF_MEMORY;
    rc = curl_mime_name(part, name);
    if (rc == CURLE_OK && value != NULL) rc = curl_mime_data(part, value, len);
    /* filedata streams the file from disk during the transfer. */
    if (rc == CURLE_OK && file != NULL) rc = curl_mime_filedata(part, file);
    if (rc == CURLE_OK && filename != NULL) rc = curl_mime_filename(part, filename);
    if (rc == CURLE_OK && type != NULL) rc = curl_mime_type(part, type);
    lua_pop(L, 1);
    if (rc != CURLE_OK) return rc;
  }
  return curl_easy_setopt(r->easy, CURLOPT_MIMEPOST, r->mime);
}

/* True when the kept list holds exactly the lines of the table at -1. */
static int same_headers(lua_State *L, const struct curl_slist *l, size_t n) {
  size_t i;
  for (i = 1; i <= n; i++, l = l->next) {
    int same;
    if (l == NULL) return 0;
    lua_rawgeti(L, -1, (int)i);
    same = lua_type(L, -1) == LUA_TSTRING && strcmp(l->data, lua_tostring(L, -1)) == 0;
    lua_pop(L, 1);
    if (!same) return 0;
  }
  return l == NULL;
}

/* The header lines. The list of the last transfer is kept while the lines
   stay the same (every status poll of a client sends the same ones): no
   list is made and freed per request. */
static CURLcode setup_headers(lua_State *L, vg_request *r, int t) {
  size_t i, n;
  lua_getfield(L, t, "headers");
  n = lua_istable(L, -1) ? vg_rawlen(L, -1) : 0;
  if (r->headers != NULL && n > 0 && same_headers(L, r->headers, n)) {
    lua_pop(L, 1);
    return curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
  }
  drop_headers(r);
  for (i = 1; i <= n; i++) {
    struct curl_slist *l;
    lua_rawgeti(L, -1, (int)i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "header %d must be a string", (int)i);
    l = curl_slist_append(r->headers, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (l == NULL) {
      lua_pop(L, 1);
      return CURLE_OUT_OF_MEMORY;
    }
    r->headers = l;
  }
  lua_pop(L, 1);
  return curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
}

static int same_string(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static char *dup_or_null(const char *s) {
  char *d;
  if (s == NULL) return NULL;
  d = malloc(strlen(s) + 1);
  if (d != NULL) strcpy(d, s);
  return d;
}

/* A plain GET (a status poll) with nothing a reset would have to undo. */
static int is_plain(const setup_opts *o) {
  return (o->method == NULL || strcmp(o->method, "GET") == 0) && o->body == NULL && !o->form &&
         o->output == NULL && o->resume_from <= 0 && !o->fresh && o->low_speed_time <= 0;
}

/* The same plain GET as last time keeps the handle's options. */
static int is_repeat(const vg_request *r, const setup_opts *o) {
  return is_plain(o) && r->plain && r->plain_verify == o->verify && r->plain_follow == o->follow &&
         same_string(r->plain_ua, o->ua) && same_string(r->plain_ca, o->ca_file);
}

/* Remembers a plain GET's options, so the next one can take the fast path. */
static void remember_plain(vg_request *r, const setup_opts *o) {
  free(r->plain_ua);
  free(r->plain_ca);
  r->plain_ua = dup_or_null(o->ua);
  r->plain_ca = dup_or_null(o->ca_file);
  r->plain_verify = o->verify;
  r->plain_follow = o->follow;
  r->plain = (o->ua == NULL || r->plain_ua != NULL) && (o->ca_file == NULL || r->plain_ca != NULL);
}

#define SET(opt, val)                                        \
  do {                                                       \
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val);  \
  } while (0)

/* The repeated plain GET: only the URL, the limits and the headers change. */
static CURLcode setup_fast(vg_request *r, const setup_opts *o) {
  CURL *e = r->easy;
  CURLcode rc = CURLE_OK;
  SET(CURLOPT_URL, o->url);
  SET(CURLOPT_TIMEOUT_MS, to_ms(o->timeout));
  SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(o->connect_timeout));
  SET(CURLOPT_MAXFILESIZE_LARGE, to_off(r->max_body));
  SET(CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  return rc;
}

/* What every transfer has: callbacks, protocols, TLS, redirects. */
static CURLcode setup_base(vg_request *r, const setup_opts *o) {
  CURL *e = r->easy;
  CURLcode rc = CURLE_OK;
  curl_easy_reset(e); /* the connection cache survives the reset */
  SET(CURLOPT_PRIVATE, (void *)r);
  SET(CURLOPT_ERRORBUFFER, r->errbuf);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, (void *)r);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, (void *)r);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, o->follow ? 1L : 0L);
  SET(CURLOPT_MAXREDIRS, 5L);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SET(CURLOPT_PIPEWAIT, 1L); /* in a multi: wait to multiplex over HTTP/2 */
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
  SET(CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
  SET(CURLOPT_URL, o->url);
  if (o->ca_file != NULL) SET(CURLOPT_CAINFO, o->ca_file);
  if (o->ua != NULL) SET(CURLOPT_USERAGENT, o->ua);
  return rc;
}

/* Everything past the base: limits, method, body, form. */
static CURLcode setup_full(lua_State *L, vg_request *r, const setup_opts *o, int t) {
  CURL *e = r->easy;
  CURLcode rc = setup_base(r, o);
  /* libcurl re-sends a request whose reused connection turns out dead; a
     request that must never be repeated asks for a connection of its own. */
  if (o->fresh) SET(CURLOPT_FRESH_CONNECT, 1L);
  if (o->timeout > 0) SET(CURLOPT_TIMEOUT_MS, to_ms(o->timeout));
  if (o->connect_timeout > 0) SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(o->connect_timeout));
  if (o->low_speed_time > 0) { /* a transfer that stalls this long is given up */
    r->stall_limit = o->low_speed_time;
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, to_whole_seconds(o->low_speed_time));
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, (void *)r);
    SET(CURLOPT_NOPROGRESS, 0L);
  }
  if (o->output == NULL && r->max_body > 0) SET(CURLOPT_MAXFILESIZE_LARGE, to_off(r->max_body));
  /* a download reads in large blocks: fewer callbacks and writes per byte */
  if (o->output != NULL) SET(CURLOPT_BUFFERSIZE, 512L * 1024L);
  /* and an upload sends in large blocks (libcurl's default of 64 KiB left a
     render upload at 0.8x curl -F) */
  if (o->form) SET(CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024L);
  if (o->method == NULL || strcmp(o->method, "GET") == 0) {
    SET(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(o->method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else if (strcmp(o->method, "POST") != 0) {
    SET(CURLOPT_CUSTOMREQUEST, o->method);
  }
  if (o->body != NULL) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    SET(CURLOPT_COPYPOSTFIELDS, o->body);
  }
  if (o->form && rc == CURLE_OK) {
    lua_getfield(L, t, "form");
    rc = setup_form(L, r, lua_gettop(L));
    lua_pop(L, 1);
  }
  return rc;
}

#undef SET

/* Forgets the previous transfer. */
static void request_reset(vg_request *r, const setup_opts *o) {
  close_output(r);
  drop_form(r); /* the header list is kept: setup_headers decides */
  vg_buf_clear(&r->body, VG_BUF_KEEP);
  vg_buf_clear(&r->head, VG_BUF_KEEP);
  r->too_large = r->head_too_large = r->head_cut = r->body_started = r->stalled = r->range_bad = 0;
  r->range_from = 0;
  r->stall_limit = 0;
  r->moved = 0;
  r->moved_at = 0;
  r->write_errno = 0;
  r->written = 0;
  r->streamed = o->output != NULL;
  r->body_to_file = -1;
  r->result = CURLE_OK;
  r->errbuf[0] = '\0';
  r->state = VG_IDLE;
  r->max_body = to_size(o->max_body);
}

/* A download: the request writes through its own dup of the .part's
   descriptor (the lock is shared, the part may be closed first); a resume
   asks for the rest with Range and If-Range (the validator on record). */
static int setup_output(lua_State *L, vg_request *r, const setup_opts *o) {
  char v[1024], line[1040], range[32];
  struct curl_slist *l;
  if (o->output == NULL) return 0;
  r->out_meta = malloc(strlen(o->output->meta) + 1);
  if (r->out_meta == NULL) return vg_fail(L, "out of memory", "OUT_OF_MEMORY");
  strcpy(r->out_meta, o->output->meta);
  r->out = dup(o->output->fd);
  if (r->out < 0) return vg_fail(L, strerror(errno), "IO_ERROR");
  if (o->resume_from <= 0) return 0;
  if (vg_part_validator(r->out_meta, v, sizeof v) == 0)
    return luaL_error(L, "option 'resume_from' needs a validator on record (part:validator())");
  r->range_from = (curl_off_t)o->resume_from;
  snprintf(range, sizeof range, "%lld-", (long long)r->range_from);
  snprintf(line, sizeof line, "If-Range: %s", v);
  l = curl_slist_append(r->headers, line);
  if (l == NULL) return vg_fail(L, "out of memory", "OUT_OF_MEMORY");
  r->headers = l;
  if (curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK ||
      curl_easy_setopt(r->easy, CURLOPT_RANGE, range) != CURLE_OK)
    return vg_fail(L, "cannot set the range", "SETUP_FAILED");
  return 0;
}

/* req:setup(opts): describe the next transfer. Raises for misuse; returns
   true, or nil, message, code when the world refuses (an output file). */
static int request_setup(lua_State *L) {
  vg_request *r = vg_checkrequest(L, 1);
  setup_opts o;
  int fast, failed;
  CURLcode rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (r->state == VG_RUNNING) return luaL_argerror(L, 1, "request is in flight");
  memset(&o, 0, sizeof o);
  read_options(L, 2, &o);
  fast = is_repeat(r, &o);
  request_reset(r, &o);
  if (!fast) r->plain = 0;
  rc = fast ? setup_fast(r, &o) : setup_full(L, r, &o, 2);
  if (rc == CURLE_OK) rc = setup_headers(L, r, 2);
  if (rc != CURLE_OK) {
    r->plain = 0;
    return vg_fail(L, curl_easy_strerror(rc), "SETUP_FAILED");
  }
  if (!fast && is_plain(&o)) remember_plain(r, &o);
  failed = setup_output(L, r, &o);
  if (failed) return failed;
  r->state = VG_READY;
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- results ------------------------------------------------------- */

static void push_lower(lua_State *L, const char *s, size_t n) {
  char tmp[128];
  size_t i;
  if (n > sizeof tmp) n = sizeof tmp;
  for (i = 0; i < n; i++) tmp[i] = (char)tolower((unsigned char)s[i]);
  lua_pushlstring(L, tmp, n);
}

/* Parses the kept header block into t[lowercase name] = value. A repeated
   header is joined with ", " as HTTP allows. */
static void push_headers(lua_State *L, const vg_buf *h) {
  const char *p = h->data, *end;
  lua_newtable(L);
  if (p == NULL) return; /* no header yet (NULL + 0 is undefined in C) */
  end = p + h->len;
  while (p != NULL && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end, *colon;
    const char *v, *ve = line_end;
    if (ve > p && ve[-1] == '\r') ve--;
    colon = memchr(p, ':', (size_t)(ve - p));
    if (colon != NULL && colon > p && !((size_t)(ve - p) >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
      v = colon + 1;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      push_lower(L, p, (size_t)(colon - p));
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      } else {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      }
      lua_rawset(L, -3);
    }
    p = eol ? eol + 1 : NULL;
  }
}

/* nil, message, code, curlcode for a transfer that failed. */
static int push_failure(lua_State *L, vg_request *r) {
  char limit[48];
  int n;
  if (r->too_large || r->result == CURLE_FILESIZE_EXCEEDED) {
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)r->max_body);
    lua_pushfstring(L, "response body is larger than the %s byte limit", limit);
    n = vg_fail(L, lua_tostring(L, -1), "TOO_LARGE");
  } else if (r->head_too_large || (r->result == CURLE_OUT_OF_MEMORY && r->head.len > 0 && !r->body_started)) {
    /* over our cap, or one line over libcurl's (CURL_MAX_HTTP_HEADER, which
       libcurl reports as OUT_OF_MEMORY while reading the header block) */
    snprintf(limit, sizeof limit, "%u", r->head_too_large ? VG_HEAD_CAP : (unsigned)CURL_MAX_HTTP_HEADER);
    lua_pushfstring(L, "response headers are larger than the %s byte limit", limit);
    n = vg_fail(L, lua_tostring(L, -1), "TOO_LARGE");
  } else if (r->head_cut) {
    n = vg_fail(L, "the connection closed in the middle of the answer's headers", "PARTIAL_HEADERS");
  } else if (r->range_bad) {
    n = vg_fail(L, "the server resumed the download at another offset than asked", "RANGE_ERROR");
  } else if (r->stalled) {
    snprintf(limit, sizeof limit, "%g", r->stall_limit);
    lua_pushfstring(L, "the transfer stalled: no byte moved for %s s", limit);
    n = vg_fail(L, lua_tostring(L, -1), "OPERATION_TIMEDOUT");
  } else if (r->write_errno != 0) {
    lua_pushfstring(L, "cannot write the download: %s", strerror(r->write_errno));
    n = vg_fail(L, lua_tostring(L, -1), "WRITE_ERROR");
  } else {
    n = vg_fail(L, r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result), vg_curl_name(r->result));
  }
  lua_pushinteger(L, (lua_Integer)r->result);
  return n + 1;
}

/* req:result() -> response table, or nil, message, code, curlcode.
   The table: status, body (nil when streamed to a file), bytes (what was
   written to the file), http_version, and headers when the status is not
   2xx or the body was streamed (a successful API answer needs none). */
static int request_result(lua_State *L) {
  vg_request *r = vg_checkrequest(L, 1);
  long status = 0, version = 0;
  if (r->state != VG_DONE) return luaL_argerror(L, 1, "request has not finished");
  if (r->result != CURLE_OK || r->too_large || r->write_errno || r->head_cut) return push_failure(L, r);
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &version);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, -2, "status");
  if (status < 200 || status >= 300 || r->streamed) {
    push_headers(L, &r->head);
    lua_setfield(L, -2, "headers");
  }
  if (!r->streamed || r->body.len > 0) {
    lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
    lua_setfield(L, -2, "body");
  }
  lua_pushnumber(L, (lua_Number)r->written);
  lua_setfield(L, -2, "bytes");
  lua_pushstring(L, version == CURL_HTTP_VERSION_2_0 ? "2" : version == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1");
  lua_setfield(L, -2, "http_version");
  return 1;
}

/* req:perform(): the blocking transfer. Same answers as req:result(). */
static int request_perform(lua_State *L) {
  vg_request *r = vg_checkrequest(L, 1);
  CURLcode rc;
  if (r->state != VG_READY) return luaL_argerror(L, 1, "request is not set up (call setup first)");
  r->state = VG_RUNNING;
  rc = curl_easy_perform(r->easy);
  request_finish(r, rc);
  lua_settop(L, 1);
  return request_result(L);
}

/* req:progress() -> bytes received so far, bytes expected (or -1). */
static int request_progress(lua_State *L) {
  vg_request *r = vg_checkrequest(L, 1);
  curl_off_t got = 0, total = -1;
  if (r->state == VG_RUNNING && r->multi != NULL && r->multi->worker != NULL) {
    curl_off_t p[4]; /* the handle is the thread's: its counters instead */
    vg_worker_progress(r, p);
    got = p[0];
    total = p[1] > 0 ? p[1] : -1;
  } else if (r->state == VG_RUNNING || r->state == VG_DONE) {
    curl_easy_getinfo(r->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &total);
  }
  lua_pushnumber(L, (lua_Number)got);
  lua_pushnumber(L, (lua_Number)total);
  return 2;
}

static int request_state(lua_State *L) {
  static const char *const names[] = {"idle", "ready", "running", "done", "closed"};
  vg_request *r = luaL_checkudata(L, 1, VG_REQUEST_MT);
  lua_pushstring(L, names[r->state]);
  return 1;
}

/* One close serves close, __gc and __close. */
static int request_close(lua_State *L) {
  vg_request *r = luaL_checkudata(L, 1, VG_REQUEST_MT);
  vg_request_detach(L, r, CURLE_ABORTED_BY_CALLBACK);
  request_release(r);
  if (r->easy != NULL) {
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
  }
  vg_buf_free(&r->body);
  vg_buf_free(&r->head);
  free(r->plain_ua);
  free(r->plain_ca);
  r->plain_ua = r->plain_ca = NULL;
  r->plain = 0;
  r->state = VG_CLOSED;
  return 0;
}

static int request_tostring(lua_State *L) {
  vg_request *r = luaL_checkudata(L, 1, VG_REQUEST_MT);
  lua_pushfstring(L, "viggle.core.request (%p)", (void *)r);
  return 1;
}

static const luaL_Reg request_methods[] = {
  {"setup", request_setup},
  {"perform", request_perform},
  {"result", request_result},
  {"progress", request_progress},
  {"state", request_state},
  {"close", request_close},
  {NULL, NULL}
};

static const luaL_Reg request_meta[] = {
  {"__gc", request_close},
  {"__close", request_close},
  {"__tostring", request_tostring},
  {NULL, NULL}
};

void vg_request_open(lua_State *L) {
  luaL_newmetatable(L, VG_REQUEST_MT);
  vg_setfuncs(L, request_meta, 0);
  lua_newtable(L);
  vg_setfuncs(L, request_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
