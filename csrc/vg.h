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

#define VG_VERSION "0.1.0"
#define VG_REQUEST_MT "viggle.core.request"
#define VG_MULTI_MT "viggle.core.multi"

/* A growable byte buffer owned by C; libcurl callbacks only ever append here. */
typedef struct vg_buf {
  char *data;
  size_t len, cap;
} vg_buf;

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
  int write_errno;          /* writing the output file failed (errno) */
  size_t max_body;
  vg_buf body, head;
  FILE *out;                /* streamed download target, or NULL */
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

/* request.c */
void vg_request_open(lua_State *L);
vg_request *vg_checkrequest(lua_State *L, int idx);
void vg_request_finish(vg_request *r, CURLcode result);
int vg_request_new(lua_State *L);

/* multi.c */
void vg_multi_open(lua_State *L);
void vg_multi_detach(vg_request *r);
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
void vg_worker_free(vg_worker *w);

/* core.c: the one exported symbol */
__attribute__((visibility("default"))) int luaopen_viggle_core(lua_State *L);

/* json.c */
int vg_json_open(lua_State *L); /* pushes the decode closure */

/* buffers */
int vg_buf_append(vg_buf *b, const char *p, size_t n);
void vg_buf_free(vg_buf *b);

#endif
