/*
 * raw_multi.c: a floor for the many-jobs scenario. One libcurl multi keeps
 * CONCURRENCY easy handles in flight; each handle, when its answer is in,
 * takes the next job id (GET BASE/api/render/ID). No JSON decoding: a job
 * counts as complete when its body contains "status":"complete". The
 * connection cache holds CONCURRENCY connections, so none is closed between
 * rounds; over TLS, PIPEWAIT lets HTTP/2 multiplex.
 *
 *   raw_multi BASE_URL IDS_FILE CONCURRENCY [CA_FILE [MAX_HOST_CONNECTIONS]]
 *
 * MAX_HOST_CONNECTIONS (default 0: no limit) sets CURLMOPT_MAX_HOST_CONNECTIONS:
 * transfers over the limit wait in libcurl's queue for a free connection or,
 * over HTTP/2, a free stream.
 * Prints jobs=N wall_s=X cpu_s=Y complete=C other=O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>

typedef struct {
  CURL *easy;
  char body[4096];
  size_t len;
} slot;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  slot *s = ud;
  size_t len = size * n, room = sizeof s->body - 1 - s->len;
  memcpy(s->body + s->len, p, len < room ? len : room);
  s->len += len < room ? len : room;
  return len;
}

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  char **ids = NULL, line[512], url[1024];
  size_t nids = 0, cap = 0, next = 0;
  long conc, i, complete = 0, other = 0, running_handles = 0;
  slot *slots;
  CURLM *multi;
  FILE *f;
  double c0, w0;
  int still = 0;
  if (argc < 4) {
    fprintf(stderr, "usage: raw_multi BASE_URL IDS_FILE CONCURRENCY [CA_FILE [MAX_HOST_CONNECTIONS]]\n");
    return 2;
  }
  f = fopen(argv[2], "r");
  if (f == NULL) { perror(argv[2]); return 1; }
  while (fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0') continue;
    if (nids == cap) {
      cap = cap ? cap * 2 : 1024;
      ids = realloc(ids, cap * sizeof *ids);
    }
    ids[nids++] = strdup(line);
  }
  fclose(f);
  conc = atol(argv[3]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);
  if (argc > 5 && atol(argv[5]) > 0) curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, atol(argv[5]));
  slots = calloc((size_t)conc, sizeof *slots);
  c0 = cpu_now();
  w0 = wall_now();
  for (i = 0; i < conc; i++) {
    CURL *e = curl_easy_init();
    slots[i].easy = e;
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &slots[i]);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    if (argc > 4) curl_easy_setopt(e, CURLOPT_CAINFO, argv[4]);
    if (next < nids) {
      snprintf(url, sizeof url, "%s/api/render/%s", argv[1], ids[next++]);
      curl_easy_setopt(e, CURLOPT_URL, url);
      curl_multi_add_handle(multi, e);
      running_handles++;
    }
  }
  while (running_handles > 0) {
    CURLMsg *msg;
    int left;
    curl_multi_perform(multi, &still);
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
      slot *s = NULL;
      if (msg->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      s->body[s->len] = '\0';
      if (msg->data.result == CURLE_OK && strstr(s->body, "\"status\":\"complete\"") != NULL)
        complete++;
      else
        other++;
      curl_multi_remove_handle(multi, s->easy);
      running_handles--;
      s->len = 0;
      if (next < nids) {
        snprintf(url, sizeof url, "%s/api/render/%s", argv[1], ids[next++]);
        curl_easy_setopt(s->easy, CURLOPT_URL, url);
        curl_multi_add_handle(multi, s->easy);
        running_handles++;
      }
    }
    if (running_handles > 0) curl_multi_poll(multi, NULL, 0, 1000, NULL);
  }
  printf("jobs=%zu wall_s=%.6f cpu_s=%.6f complete=%ld other=%ld\n", nids, wall_now() - w0,
         cpu_now() - c0, complete, other);
  for (i = 0; i < conc; i++) curl_easy_cleanup(slots[i].easy);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return 0;
}
