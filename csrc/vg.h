/*
 * vg.h: types shared by the C files of viggle.core.
 *
 * Only luaopen_viggle_core is exported (see the Makefile: -fvisibility=hidden);
 * the functions declared here are internal to the module.
 */
#ifndef VG_H
#define VG_H

#include <stdio.h>
#include <curl/curl.h>
#include "vg_compat.h"
#include "buf.h"

#define VG_VERSION "0.1.0"
#define VG_REQUEST_MT "viggle.core.request"
#define VG_MULTI_MT "viggle.core.multi"
#define VG_PART_MT "viggle.core.part"

enum vg_state { VG_IDLE = 0, VG_READY, VG_RUNNING, VG_DONE, VG_CLOSED };

struct vg_multi;
typedef struct vg_worker vg_worker;

typedef struct vg_request {
  CURL *easy;               /* NULL once closed */
  enum vg_state state;
  struct vg_multi *multi;   /* the multi it is in, while running there */
  int anchor;               /* registry ref that keeps it alive in a multi */
  struct vg_request *prev, *next; /* the multi's list of its requests */
  CURLcode result;
  int too_large;            /* the body passed max_body */
  int head_too_large;       /* the header block passed its cap */
  int head_cut;             /* the connection closed before the header block ended */
  int body_started;         /* the current response has sent body bytes */
  int stalled;              /* no byte moved for stall_limit seconds */
  double stall_limit;       /* seconds, 0: no check */
  curl_off_t moved;         /* bytes moved either way, at moved_at (monotonic s) */
  double moved_at;
  int write_errno;          /* writing the output file failed (errno) */
  size_t max_body;
  vg_buf body, head;
  int out;                  /* the download's .part (our own dup), or -1 */
  char *out_meta;           /* where its validator is recorded */
  curl_off_t range_from;    /* asked for the bytes from here (If-Range) */
  int range_bad;            /* a 206 that does not start there */
  int streamed;             /* this transfer had an output file */
  int body_to_file;         /* -1: not known yet for this response; 1: 2xx, to the file */
  curl_off_t written;       /* bytes written to out by this transfer */
  struct curl_slist *headers;
  curl_mime *mime;
  char errbuf[CURL_ERROR_SIZE];
  /* The last setup was a plain GET with these options: the next plain GET
     with the same ones skips curl_easy_reset and sets only what changes. */
  int plain;
  int plain_verify, plain_follow;
  char *plain_ua, *plain_ca;
  int wstate;               /* where it is in a worker (worker.c), under its lock */
  curl_off_t wprogress[4];  /* dlnow, dltotal, ulnow, ultotal, from a worker's thread */
} vg_request;

typedef struct vg_sockchange {
  curl_socket_t fd;
  int what;                 /* CURL_POLL_IN / OUT / INOUT / REMOVE */
} vg_sockchange;

typedef struct vg_multi {
  CURLM *multi;             /* NULL once closed */
  vg_request *head;         /* requests in flight */
  int count;
  int socket_mode;          /* driven by socket_action (host loops) */
  long max_connects;        /* size of the connection cache */
  long max_host;            /* cap on connections to one host, 0: none */
  vg_sockchange *changes;   /* recorded by the socket callback */
  size_t nchanges, capchanges;
  long timer_ms;            /* recorded by the timer callback */
  int timer_changed;
  vg_worker *worker;        /* a thread drives this multi (worker.c), or NULL */
} vg_multi;

/* The files call each other one way: core.c -> multi.c -> request.c ->
   part.c, error.c, buf.c (json.c -> buf.c). A request's membership of a multi (the
   list links, the count, the registry anchor) is request.c's alone. */

/* request.c */
void vg_request_open(lua_State *L);
vg_request *vg_checkrequest(lua_State *L, int idx);
int vg_request_new(lua_State *L);
/* Puts the request at idx into m's list and anchors it (a registry ref) so
   it cannot be collected while in flight. */
void vg_request_attach(lua_State *L, vg_request *r, vg_multi *m, int idx);
/* The one way out of a multi (finished, removed, the request or the multi
   closed): removes the easy handle, unlinks, ends the transfer with `result`
   and drops the anchor. Does nothing for a request in no multi. */
void vg_request_detach(lua_State *L, vg_request *r, CURLcode result);

/* The download target: <path>.part, locked, and its validator in
   <path>.part.meta (part.c). */
typedef struct vg_part {
  int fd;                   /* -1 once closed */
  char *path, *part, *meta;
} vg_part;

/* part.c */
void vg_part_open(lua_State *L);
int vg_part_new(lua_State *L);
vg_part *vg_checkpart(lua_State *L, int idx);
/* The bytes start again from zero: empties fd and records the validator
   (none: the record goes). 0, or an errno. */
int vg_part_restart(int fd, const char *meta, const char *validator, size_t n);
/* Reads the recorded validator into out (NUL-terminated); its length, 0 if none. */
size_t vg_part_validator(const char *meta, char *out, size_t cap);

/* multi.c */
void vg_multi_open(lua_State *L);
int vg_multi_new(lua_State *L);

/* worker.c: a multi driven on a thread of its own */
vg_worker *vg_worker_new(CURLM *multi);
int vg_worker_fd(const vg_worker *w);
int vg_worker_add(vg_worker *w, vg_request *r);
void vg_worker_remove(vg_worker *w, vg_request *r);
size_t vg_worker_collect(vg_worker *w, void (*fn)(vg_request *, CURLcode, void *), void *ud);
int vg_worker_wait(vg_worker *w, int ms);
void vg_worker_set(vg_worker *w, long max_connects, long max_host);
void vg_worker_progress(const vg_request *r, curl_off_t out[4]);
void vg_worker_store_progress(vg_request *r, curl_off_t dlnow, curl_off_t dltotal, curl_off_t ulnow,
                              curl_off_t ultotal);
void vg_worker_free(vg_worker *w);
/* request.c: makes libcurl report progress to the request (its counters,
   and the stall check when it has one), or stops it. */
void vg_request_report_progress(vg_request *r, int on);

/* error.c */
/* Pushes nil, msg, code: how the world's refusals come back (as liolib's
   luaL_fileresult). Returns 3. */
int vg_fail(lua_State *L, const char *msg, const char *code);
/* The name of a libcurl result code, from one table ("CURL_ERROR" if unknown). */
const char *vg_curl_name(CURLcode c);

/* core.c: the one exported symbol */
__attribute__((visibility("default"))) int luaopen_viggle_core(lua_State *L);

/* redis.c */
int vg_redis_connect(lua_State *L);

/* json.c */
int vg_json_open(lua_State *L); /* sets decode and null in the table at -1 */

#endif
