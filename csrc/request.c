/*
 * request.c: the request object, a userdata around one libcurl easy handle.
 *
 * The handle is reused from request to request (setup resets its options but
 * keeps its connection cache), so sequential calls stay on one connection.
 * libcurl callbacks here only move bytes into C-owned buffers or a FILE*;
 * no Lua runs inside them (design.md says why).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#include "vg.h"

#define VG_DEFAULT_MAX_BODY (8u * 1024u * 1024u)
#define VG_ERROR_BODY_CAP (64u * 1024u) /* kept from a failed download */
#define VG_BUF_KEEP (256u * 1024u)      /* larger buffers are freed between uses */

int vg_buf_append(vg_buf *b, const char *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *d;
    while (cap < b->len + n) cap *= 2;
    d = realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void vg_buf_free(vg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static void buf_clear(vg_buf *b) {
  if (b->cap > VG_BUF_KEEP) vg_buf_free(b);
  b->len = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  vg_request *r = ud;
  size_t len = size * n, cap = r->max_body;
  if (r->out != NULL) {
    if (r->body_to_file < 0) { /* once per response, not per chunk */
      long code = 0;
      curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
      r->body_to_file = code >= 200 && code < 300;
    }
    if (r->body_to_file) {
      if (fwrite(p, 1, len, r->out) != len) {
        r->write_errno = errno ? errno : EIO;
        return 0;
      }
      r->written += (curl_off_t)len;
      return len;
    }
    cap = VG_ERROR_BODY_CAP; /* an error page: keep its start for the message */
  }
  if (cap && r->body.len + len > cap) {
    if (r->out != NULL) return len; /* drop the rest of an error page */
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
  }
  if (r->head.len + len > 256u * 1024u) return 0; /* absurd header block */
  if (vg_buf_append(&r->head, p, len) != 0) return 0;
  return len;
}

vg_request *vg_checkrequest(lua_State *L, int idx) {
  vg_request *r = luaL_checkudata(L, idx, VG_REQUEST_MT);
  if (r->easy == NULL) luaL_argerror(L, idx, "request is closed");
  return r;
}

static void request_release(vg_request *r) {
  if (r->out != NULL) {
    fclose(r->out);
    r->out = NULL;
  }
  if (r->headers != NULL) {
    curl_slist_free_all(r->headers);
    r->headers = NULL;
  }
  if (r->mime != NULL) {
    curl_mime_free(r->mime);
    r->mime = NULL;
  }
}

/* Called when a transfer ends (by the blocking perform or by the multi). */
void vg_request_finish(vg_request *r, CURLcode result) {
  r->result = result;
  r->state = VG_DONE;
  if (r->out != NULL) {
    if (fclose(r->out) != 0 && r->write_errno == 0) r->write_errno = errno ? errno : EIO;
    r->out = NULL;
  }
  if (r->mime != NULL) { /* closes the upload files now, not at the next setup */
    curl_easy_setopt(r->easy, CURLOPT_MIMEPOST, (curl_mime *)NULL);
    curl_mime_free(r->mime);
    r->mime = NULL;
  }
}

int vg_request_new(lua_State *L) {
  /* The userdata is made in a safe, empty state before anything is acquired,
     so a failure below leaves nothing for __gc to trip on. */
  vg_request *r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  r->anchor = LUA_NOREF;
  r->state = VG_CLOSED;
  luaL_getmetatable(L, VG_REQUEST_MT);
  lua_setmetatable(L, -2);
  r->easy = curl_easy_init();
  if (r->easy == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "curl_easy_init failed");
    lua_pushliteral(L, "OUT_OF_MEMORY");
    return 3;
  }
  r->state = VG_IDLE;
  return 1;
}

/* ---- setup ----------------------------------------------------------- */

static const char *opt_string(lua_State *L, int t, const char *k) {
  const char *s = NULL;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", k);
    s = lua_tostring(L, -1);
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

static long to_ms(double seconds) {
  double ms = seconds * 1000.0;
  if (ms > 2147483647.0) ms = 2147483647.0;
  if (seconds > 0 && ms < 1) ms = 1; /* 0 would mean "no timeout" to libcurl */
  return (long)ms;
}

static CURLcode setup_form(lua_State *L, vg_request *r, int t) {
  size_t i, n = vg_rawlen(L, t);
  r->mime = curl_mime_init(r->easy);
  if (r->mime == NULL) return CURLE_OUT_OF_MEMORY;
  for (i = 1; i <= n; i++) {
    curl_mimepart *part;
    const char *name, *value, *file, *filename, *type;
    CURLcode rc = CURLE_OK;
    lua_rawgeti(L, t, (int)i);
    if (!lua_istable(L, -1)) luaL_error(L, "form part %d must be a table", (int)i);
    name = opt_string(L, -1, "name");
    value = opt_string(L, -1, "value");
    file = opt_string(L, -1, "file");
    filename = opt_string(L, -1, "filename");
    type = opt_string(L, -1, "type");
    if (name == NULL || (value == NULL) == (file == NULL))
      luaL_error(L, "form part %d needs a name and exactly one of value, file", (int)i);
    part = curl_mime_addpart(r->mime);
    if (part == NULL) return CURLE_OUT_OF_MEMORY;
    rc = curl_mime_name(part, name);
    if (rc == CURLE_OK && value != NULL) {
      size_t len;
      lua_getfield(L, -1, "value");
      value = lua_tolstring(L, -1, &len);
      rc = curl_mime_data(part, value, len);
      lua_pop(L, 1);
    }
    /* filedata streams the file from disk during the transfer. */
    if (rc == CURLE_OK && file != NULL) rc = curl_mime_filedata(part, file);
    if (rc == CURLE_OK && filename != NULL) rc = curl_mime_filename(part, filename);
    if (rc == CURLE_OK && type != NULL) rc = curl_mime_type(part, type);
    lua_pop(L, 1);
    if (rc != CURLE_OK) return rc;
  }
  return curl_easy_setopt(r->easy, CURLOPT_MIMEPOST, r->mime);
}

static CURLcode setup_headers(lua_State *L, vg_request *r, int t) {
  size_t i, n = vg_rawlen(L, t);
  for (i = 1; i <= n; i++) {
    struct curl_slist *l;
    lua_rawgeti(L, t, (int)i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "header %d must be a string", (int)i);
    l = curl_slist_append(r->headers, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (l == NULL) return CURLE_OUT_OF_MEMORY;
    r->headers = l;
  }
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

#define SET(opt, val)                                        \
  do {                                                       \
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val);  \
  } while (0)

/* req:setup(opts): describe the next transfer. Raises for misuse; returns
   true, or nil, message, code when the world refuses (an output file). */
static int request_setup(lua_State *L) {
  vg_request *r = vg_checkrequest(L, 1);
  CURL *e = r->easy;
  CURLcode rc = CURLE_OK;
  const char *url, *method, *body, *output, *ca_file, *ua;
  size_t body_len = 0;
  double timeout, connect_timeout, resume_from, low_speed_time;
  int append, verify, follow, fresh, form_given, plain, fast;

  luaL_checktype(L, 2, LUA_TTABLE);
  if (r->state == VG_RUNNING) return luaL_argerror(L, 1, "request is in flight");

  url = opt_string(L, 2, "url");
  if (url == NULL) return luaL_argerror(L, 2, "option 'url' is required");
  method = opt_string(L, 2, "method");
  output = opt_string(L, 2, "output");
  ca_file = opt_string(L, 2, "ca_file");
  ua = opt_string(L, 2, "user_agent");
  timeout = opt_number(L, 2, "timeout", 0);
  connect_timeout = opt_number(L, 2, "connect_timeout", 0);
  resume_from = opt_number(L, 2, "resume_from", 0);
  low_speed_time = opt_number(L, 2, "low_speed_time", 0);
  r->max_body = (size_t)opt_number(L, 2, "max_body", VG_DEFAULT_MAX_BODY);
  append = opt_bool(L, 2, "append", 0);
  verify = opt_bool(L, 2, "verify", 1);
  follow = opt_bool(L, 2, "follow", 1);
  fresh = opt_bool(L, 2, "fresh_connect", 0);
  lua_getfield(L, 2, "body");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "option 'body' must be a string");
    body = lua_tolstring(L, -1, &body_len);
  } else {
    body = NULL;
  }
  lua_pop(L, 1);

  lua_getfield(L, 2, "form");
  form_given = !lua_isnil(L, -1);
  lua_pop(L, 1);
  plain = (method == NULL || strcmp(method, "GET") == 0) && body == NULL && !form_given &&
          output == NULL && resume_from <= 0 && !fresh && low_speed_time <= 0;
  /* The same plain GET as last time (the common case: status polls) keeps
     the handle's options and changes only the URL, timeouts and headers. */
  fast = plain && r->plain && r->plain_verify == verify && r->plain_follow == follow &&
         same_string(r->plain_ua, ua) && same_string(r->plain_ca, ca_file);

  /* Forget the previous transfer; the connection cache survives the reset. */
  request_release(r);
  buf_clear(&r->body);
  buf_clear(&r->head);
  r->too_large = 0;
  r->write_errno = 0;
  r->written = 0;
  r->streamed = output != NULL;
  r->body_to_file = -1;
  r->result = CURLE_OK;
  r->errbuf[0] = '\0';
  r->state = VG_IDLE;

  if (fast) {
    SET(CURLOPT_URL, url);
    SET(CURLOPT_TIMEOUT_MS, timeout > 0 ? to_ms(timeout) : 0L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout > 0 ? to_ms(connect_timeout) : 0L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
    SET(CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    goto headers;
  }
  r->plain = 0;
  curl_easy_reset(e);
  SET(CURLOPT_PRIVATE, (void *)r);
  SET(CURLOPT_ERRORBUFFER, r->errbuf);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, (void *)r);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, (void *)r);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
  SET(CURLOPT_MAXREDIRS, 5L);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SET(CURLOPT_PIPEWAIT, 1L); /* in a multi: wait to multiplex over HTTP/2 */
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
  SET(CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  SET(CURLOPT_URL, url);
  /* libcurl re-sends a request whose reused connection turns out dead; a
     request that must never be repeated asks for a connection of its own. */
  if (fresh) SET(CURLOPT_FRESH_CONNECT, 1L);
  if (ca_file != NULL) SET(CURLOPT_CAINFO, ca_file);
  if (ua != NULL) SET(CURLOPT_USERAGENT, ua);
  if (timeout > 0) SET(CURLOPT_TIMEOUT_MS, to_ms(timeout));
  if (connect_timeout > 0) SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(connect_timeout));
  if (low_speed_time > 0) {
    /* a download that stalls (under 1 byte/s) this long is given up */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, (long)low_speed_time);
  }
  if (output == NULL && r->max_body > 0)
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
  if (resume_from > 0) SET(CURLOPT_RESUME_FROM_LARGE, (curl_off_t)resume_from);
  /* a download reads in large blocks: fewer callbacks and writes per byte */
  if (output != NULL) SET(CURLOPT_BUFFERSIZE, 512L * 1024L);
  /* and an upload sends in large blocks (libcurl's default is 64 KiB) */
  if (form_given) SET(CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024L);

  if (method == NULL || strcmp(method, "GET") == 0) {
    SET(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "POST") != 0) {
    SET(CURLOPT_CUSTOMREQUEST, method);
  }
  if (body != NULL) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    SET(CURLOPT_COPYPOSTFIELDS, body);
  }
  lua_getfield(L, 2, "form");
  if (!lua_isnil(L, -1) && rc == CURLE_OK) {
    luaL_checktype(L, -1, LUA_TTABLE);
    rc = setup_form(L, r, lua_gettop(L));
  }
  lua_pop(L, 1);
headers:
  lua_getfield(L, 2, "headers");
  if (!lua_isnil(L, -1) && rc == CURLE_OK) {
    luaL_checktype(L, -1, LUA_TTABLE);
    rc = setup_headers(L, r, lua_gettop(L));
  }
  lua_pop(L, 1);
  if (rc != CURLE_OK) {
    r->plain = 0;
    lua_pushnil(L);
    lua_pushstring(L, curl_easy_strerror(rc));
    lua_pushliteral(L, "SETUP_FAILED");
    return 3;
  }
  if (plain && !fast) {
    free(r->plain_ua);
    free(r->plain_ca);
    r->plain_ua = dup_or_null(ua);
    r->plain_ca = dup_or_null(ca_file);
    r->plain_verify = verify;
    r->plain_follow = follow;
    r->plain = (ua == NULL || r->plain_ua != NULL) && (ca_file == NULL || r->plain_ca != NULL);
  }
  if (output != NULL) {
    r->out = fopen(output, append ? "ab" : "wb");
    if (r->out == NULL) {
      int en = errno;
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", output, strerror(en));
      lua_pushliteral(L, "IO_ERROR");
      return 3;
    }
  }
  r->state = VG_READY;
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- results ------------------------------------------------------- */

static const char *code_name(CURLcode c) {
  switch (c) {
    case CURLE_UNSUPPORTED_PROTOCOL: return "UNSUPPORTED_PROTOCOL";
    case CURLE_URL_MALFORMAT: return "URL_MALFORMAT";
    case CURLE_COULDNT_RESOLVE_PROXY: return "COULDNT_RESOLVE_PROXY";
    case CURLE_COULDNT_RESOLVE_HOST: return "COULDNT_RESOLVE_HOST";
    case CURLE_COULDNT_CONNECT: return "COULDNT_CONNECT";
    case CURLE_WEIRD_SERVER_REPLY: return "WEIRD_SERVER_REPLY";
    case CURLE_HTTP2: return "HTTP2";
    case CURLE_PARTIAL_FILE: return "PARTIAL_FILE";
    case CURLE_WRITE_ERROR: return "WRITE_ERROR";
    case CURLE_READ_ERROR: return "READ_ERROR";
    case CURLE_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case CURLE_OPERATION_TIMEDOUT: return "OPERATION_TIMEDOUT";
    case CURLE_RANGE_ERROR: return "RANGE_ERROR";
    case CURLE_SSL_CONNECT_ERROR: return "SSL_CONNECT_ERROR";
    case CURLE_ABORTED_BY_CALLBACK: return "ABORTED";
    case CURLE_TOO_MANY_REDIRECTS: return "TOO_MANY_REDIRECTS";
    case CURLE_GOT_NOTHING: return "GOT_NOTHING";
    case CURLE_SEND_ERROR: return "SEND_ERROR";
    case CURLE_RECV_ERROR: return "RECV_ERROR";
    case CURLE_SSL_CERTPROBLEM: return "SSL_CERTPROBLEM";
    case CURLE_SSL_CIPHER: return "SSL_CIPHER";
    case CURLE_PEER_FAILED_VERIFICATION: return "PEER_FAILED_VERIFICATION";
    case CURLE_BAD_CONTENT_ENCODING: return "BAD_CONTENT_ENCODING";
    case CURLE_FILESIZE_EXCEEDED: return "TOO_LARGE";
    case CURLE_SSL_CACERT_BADFILE: return "SSL_CACERT_BADFILE";
    case CURLE_HTTP2_STREAM: return "HTTP2_STREAM";
    case CURLE_SSL_SHUTDOWN_FAILED: return "SSL_SHUTDOWN_FAILED";
    case CURLE_AGAIN: return "AGAIN";
    default: return "CURL_ERROR";
  }
}

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
  const char *p = h->data, *end = h->data + h->len;
  lua_newtable(L);
  while (p != NULL && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end, *colon;
    const char *v, *ve = line_end;
    if (ve > p && ve[-1] == '\r') ve--;
    colon = memchr(p, ':', (size_t)(ve - p));
    if (colon != NULL && colon > p && memcmp(p, "HTTP/", 5) != 0) {
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

static int push_failure(lua_State *L, vg_request *r) {
  lua_pushnil(L);
  if (r->too_large || r->result == CURLE_FILESIZE_EXCEEDED) {
    lua_pushfstring(L, "response body is larger than the %d byte limit", (int)r->max_body);
    lua_pushliteral(L, "TOO_LARGE");
  } else if (r->write_errno != 0) {
    lua_pushfstring(L, "cannot write the download: %s", strerror(r->write_errno));
    lua_pushliteral(L, "WRITE_ERROR");
  } else {
    lua_pushstring(L, r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result));
    lua_pushstring(L, code_name(r->result));
  }
  lua_pushinteger(L, (lua_Integer)r->result);
  return 4;
}

/* req:result() -> response table, or nil, message, code, curlcode.
   The table: status, body (nil when streamed to a file), bytes (what was
   written to the file), http_version, and headers when the status is not
   2xx or the body was streamed (a successful API answer needs none). */
static int request_result(lua_State *L) {
  vg_request *r = vg_checkrequest(L, 1);
  long status = 0, version = 0;
  if (r->state != VG_DONE) return luaL_argerror(L, 1, "request has not finished");
  if (r->result != CURLE_OK || r->too_large || r->write_errno) return push_failure(L, r);
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
  vg_request_finish(r, rc);
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
  if (r->multi != NULL) {
    int anchor = r->anchor;
    vg_multi_detach(r);
    luaL_unref(L, LUA_REGISTRYINDEX, anchor);
    r->anchor = LUA_NOREF;
  }
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
