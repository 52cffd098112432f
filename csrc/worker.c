/*
 * worker.c: libcurl's multi on a thread of its own, so that bytes move while
 * the host (a game loop, nginx, a uv loop) does its own work.
 *
 * The thread owns the multi and every easy handle in flight. The Lua side
 * (multi.c, on the thread that runs Lua) hands it set-up requests and
 * collects finished ones; it never touches a handle the thread holds. No Lua
 * ever runs on the thread, and it never allocates: every array it writes to
 * is sized by the Lua side when a request is handed over.
 *
 * Hand-over and results go through one mutex. The thread is woken with
 * curl_multi_wakeup; the Lua side is woken through a pipe whose read end is
 * readable while results wait (a host loop can watch it; step() polls it).
 * The thread is started on the first request, in the process that makes it:
 * never before a fork (nginx's master forks its workers).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vg.h"

/* Where a request is, as far as the worker is concerned (r->wstate). */
enum { VG_W_NONE = 0, VG_W_QUEUED, VG_W_ACTIVE, VG_W_REMOVED, VG_W_DONE };

typedef struct vg_done {
  vg_request *r;
  CURLcode result;
} vg_done;

struct vg_worker {
  pthread_mutex_t lock;
  pthread_cond_t removed;   /* broadcast when the thread let go of `removing` */
  pthread_t thread;
  int started, stop;
  pid_t pid;                /* the process that made it */
  CURLM *multi;             /* the thread's while it runs */
  int fds[2];               /* the pipe: [0] readable while results wait */
  int signalled;            /* a byte is in the pipe */
  size_t inflight;          /* requests handed over and not yet collected */
  vg_request **adds;        /* handed over, not yet in the multi */
  size_t nadds;
  vg_request *removing;     /* the Lua side waits for this one to be let go */
  vg_done *done, *spare;    /* finished, not yet collected; spare is swapped in */
  size_t ndone, cap;        /* cap: the size of adds, done and spare */
  long max_connects, max_host;
  int settings_changed;
};

static int set_flags(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

vg_worker *vg_worker_new(CURLM *multi) {
  vg_worker *w = calloc(1, sizeof *w);
  if (w == NULL) return NULL;
  if (pipe(w->fds) != 0) {
    free(w);
    return NULL;
  }
  if (set_flags(w->fds[0]) != 0 || set_flags(w->fds[1]) != 0 ||
      pthread_mutex_init(&w->lock, NULL) != 0) {
    close(w->fds[0]);
    close(w->fds[1]);
    free(w);
    return NULL;
  }
  pthread_cond_init(&w->removed, NULL);
  w->multi = multi;
  w->pid = getpid();
  w->max_connects = w->max_host = -1;
  return w;
}

int vg_worker_fd(const vg_worker *w) { return w->fds[0]; }

/* ---- the thread ------------------------------------------------------ */

/* Under the lock: a finished request goes to the done list (sized by
   vg_worker_add, so this never fails), and the pipe gets a byte. */
static void push_done(vg_worker *w, vg_request *r, CURLcode result) {
  r->wstate = VG_W_DONE;
  w->done[w->ndone].r = r;
  w->done[w->ndone].result = result;
  w->ndone++;
  if (!w->signalled) {
    ssize_t n = write(w->fds[1], "x", 1);
    w->signalled = n == 1;
  }
}

/* Under the lock: what the Lua side asked for since the last turn. */
static void take_orders(vg_worker *w) {
  size_t i;
  for (i = 0; i < w->nadds; i++) {
    vg_request *r = w->adds[i];
    if (curl_multi_add_handle(w->multi, r->easy) == CURLM_OK) r->wstate = VG_W_ACTIVE;
    else push_done(w, r, CURLE_FAILED_INIT);
  }
  w->nadds = 0;
  if (w->removing != NULL) {
    vg_request *r = w->removing;
    if (r->wstate == VG_W_ACTIVE) {
      curl_multi_remove_handle(w->multi, r->easy);
      r->wstate = VG_W_REMOVED;
    }
    w->removing = NULL;
    pthread_cond_broadcast(&w->removed);
  }
  if (w->settings_changed) {
    if (w->max_connects >= 0) curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, w->max_connects);
    if (w->max_host >= 0) curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, w->max_host);
    w->settings_changed = 0;
  }
}

static void *worker_main(void *ud) {
  vg_worker *w = ud;
  pthread_mutex_lock(&w->lock);
  while (!w->stop) {
    int running = 0, left = 0;
    CURLMsg *msg;
    take_orders(w);
    pthread_mutex_unlock(&w->lock);
    curl_multi_perform(w->multi, &running);
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
      vg_request *r = NULL;
      CURLcode result = msg->data.result; /* msg is invalid after remove */
      if (msg->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
      curl_multi_remove_handle(w->multi, msg->easy_handle);
      if (r == NULL) continue;
      pthread_mutex_lock(&w->lock);
      push_done(w, r, result);
      pthread_mutex_unlock(&w->lock);
    }
    /* libcurl's own timeouts shorten this; curl_multi_wakeup ends it */
    curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
    pthread_mutex_lock(&w->lock);
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

/* Progress counters the Lua side may read while the thread runs the
   transfer (request.c's progress callback stores them). */
void vg_worker_store_progress(vg_request *r, curl_off_t dlnow, curl_off_t dltotal, curl_off_t ulnow,
                              curl_off_t ultotal) {
  __atomic_store_n(&r->wprogress[0], dlnow, __ATOMIC_RELAXED);
  __atomic_store_n(&r->wprogress[1], dltotal, __ATOMIC_RELAXED);
  __atomic_store_n(&r->wprogress[2], ulnow, __ATOMIC_RELAXED);
  __atomic_store_n(&r->wprogress[3], ultotal, __ATOMIC_RELAXED);
}

void vg_worker_progress(const vg_request *r, curl_off_t out[4]) {
  int i;
  for (i = 0; i < 4; i++) out[i] = __atomic_load_n(&r->wprogress[i], __ATOMIC_RELAXED);
}

/* ---- the Lua side ------------------------------------------------------ */

static int start(vg_worker *w) {
  sigset_t all, old;
  int rc;
  /* every signal stays with the host's own threads (nginx's handlers) */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&w->thread, NULL, worker_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return rc;
  w->started = 1;
  return 0;
}

static int reserve(vg_worker *w, size_t n) {
  size_t cap = w->cap ? w->cap : 16;
  vg_request **a;
  vg_done *d, *s;
  if (n <= w->cap) return 0;
  while (cap < n) cap *= 2;
  a = realloc(w->adds, cap * sizeof *a);
  if (a == NULL) return ENOMEM;
  w->adds = a;
  d = realloc(w->done, cap * sizeof *d);
  if (d == NULL) return ENOMEM;
  w->done = d;
  s = realloc(w->spare, cap * sizeof *s);
  if (s == NULL) return ENOMEM;
  w->spare = s;
  w->cap = cap;
  return 0;
}

/* Hands a set-up request to the thread (started now if need be). Returns 0,
   or an errno value: ECHILD when the worker was made in another process. */
int vg_worker_add(vg_worker *w, vg_request *r) {
  int rc;
  if (w->pid != getpid()) return ECHILD;
  memset(r->wprogress, 0, sizeof r->wprogress);
  vg_request_report_progress(r, 1);
  pthread_mutex_lock(&w->lock);
  rc = reserve(w, w->inflight + 1);
  if (rc == 0 && !w->started) rc = start(w);
  if (rc == 0) {
    w->adds[w->nadds++] = r;
    w->inflight++;
    r->wstate = VG_W_QUEUED;
  }
  pthread_mutex_unlock(&w->lock);
  if (rc == 0) curl_multi_wakeup(w->multi);
  else vg_request_report_progress(r, 0);
  return rc;
}

static void drop(vg_request **a, size_t *n, vg_request *r) {
  size_t i;
  for (i = 0; i < *n; i++) {
    if (a[i] == r) {
      a[i] = a[--*n];
      return;
    }
  }
}

/* Under the lock: the request is the Lua side's alone again. */
static void forget(vg_worker *w, vg_request *r) {
  r->wstate = VG_W_NONE;
  w->inflight--;
  vg_request_report_progress(r, 0);
}

/* Takes a request back from the thread before its end (cancel, close).
   Returns once the thread has let go of its handle. */
void vg_worker_remove(vg_worker *w, vg_request *r) {
  pthread_mutex_lock(&w->lock);
  if (r->wstate == VG_W_QUEUED) drop(w->adds, &w->nadds, r);
  if (r->wstate == VG_W_ACTIVE) {
    w->removing = r;
    curl_multi_wakeup(w->multi);
    while (r->wstate == VG_W_ACTIVE) pthread_cond_wait(&w->removed, &w->lock);
  }
  if (r->wstate == VG_W_DONE) {
    size_t i;
    for (i = 0; i < w->ndone; i++) {
      if (w->done[i].r == r) {
        w->done[i] = w->done[--w->ndone];
        break;
      }
    }
  }
  if (r->wstate != VG_W_NONE) forget(w, r);
  pthread_mutex_unlock(&w->lock);
}

/* Calls fn(r, result, ud) for every request finished since the last call;
   returns how many. */
size_t vg_worker_collect(vg_worker *w, void (*fn)(vg_request *, CURLcode, void *), void *ud) {
  vg_done *list;
  size_t i, n;
  pthread_mutex_lock(&w->lock);
  if (w->signalled) {
    char sink[64];
    while (read(w->fds[0], sink, sizeof sink) > 0) continue;
    w->signalled = 0;
  }
  list = w->done;
  n = w->ndone;
  w->done = w->spare;
  w->spare = list;
  w->ndone = 0;
  for (i = 0; i < n; i++) forget(w, list[i].r);
  pthread_mutex_unlock(&w->lock);
  for (i = 0; i < n; i++) fn(list[i].r, list[i].result, ud);
  return n;
}

/* Waits at most ms milliseconds for a result; returns 1 when one waits. */
int vg_worker_wait(vg_worker *w, int ms) {
  struct pollfd p;
  int rc;
  p.fd = w->fds[0];
  p.events = POLLIN;
  p.revents = 0;
  do rc = poll(&p, 1, ms); while (rc < 0 && errno == EINTR && ms == 0);
  return rc > 0;
}

/* Connection settings, applied by the thread at its next turn. */
void vg_worker_set(vg_worker *w, long max_connects, long max_host) {
  pthread_mutex_lock(&w->lock);
  if (max_connects >= 0) w->max_connects = max_connects;
  if (max_host >= 0) w->max_host = max_host;
  w->settings_changed = 1;
  pthread_mutex_unlock(&w->lock);
  if (w->started) curl_multi_wakeup(w->multi);
}

/* Stops and joins the thread; the multi and every handle in it are the
   caller's again (handles still in it are the caller's to remove). */
void vg_worker_free(vg_worker *w) {
  size_t i;
  if (w == NULL) return;
  if (w->started && w->pid == getpid()) {
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_mutex_unlock(&w->lock);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
  }
  for (i = 0; i < w->nadds; i++) w->adds[i]->wstate = VG_W_NONE;
  for (i = 0; i < w->ndone; i++) w->done[i].r->wstate = VG_W_NONE;
  close(w->fds[0]);
  close(w->fds[1]);
  pthread_cond_destroy(&w->removed);
  pthread_mutex_destroy(&w->lock);
  free(w->adds);
  free(w->done);
  free(w->spare);
  free(w);
}
