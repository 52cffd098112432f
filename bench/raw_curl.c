/*
 * raw_curl.c: the floor for sequential status calls. One libcurl easy handle,
 * set up once and reused, GETs the same URL N times over one keep-alive
 * connection (HTTP version: libcurl's default, as in viggle); the body goes
 * into a reused buffer (no JSON decoding).
 *
 *   raw_curl URL CALLS WARMUP [CA_FILE]
 *
 * Prints: calls=N cpu_s=X wall_s=Y new_conns_last=Z (CPU = user+sys of this process
 * from getrusage over the timed calls only; warm-up calls are not counted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>

typedef struct { char *data; size_t len, cap; } buf;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  buf *b = ud;
  size_t len = size * n;
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + len) cap *= 2;
    b->data = realloc(b->data, cap);
    if (b->data == NULL) return 0;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, len);
  b->len += len;
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

static int one_call(CURL *e, buf *b) {
  long code = 0;
  CURLcode rc;
  b->len = 0;
  rc = curl_easy_perform(e);
  if (rc != CURLE_OK) {
    fprintf(stderr, "raw_curl: %s\n", curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200 || b->len == 0) {
    fprintf(stderr, "raw_curl: HTTP %ld, %zu bytes\n", code, b->len);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  CURL *e;
  buf b = {NULL, 0, 0};
  long calls, warmup, i, conns = 0;
  double c0, w0, c1, w1;
  if (argc < 4) {
    fprintf(stderr, "usage: raw_curl URL CALLS WARMUP [CA_FILE]\n");
    return 2;
  }
  calls = atol(argv[2]);
  warmup = atol(argv[3]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, argv[1]);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  if (argc > 4) curl_easy_setopt(e, CURLOPT_CAINFO, argv[4]);
  for (i = 0; i < warmup; i++)
    if (one_call(e, &b) != 0) return 1;
  c0 = cpu_now();
  w0 = wall_now();
  for (i = 0; i < calls; i++)
    if (one_call(e, &b) != 0) return 1;
  c1 = cpu_now();
  w1 = wall_now();
  curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns);
  printf("calls=%ld cpu_s=%.6f wall_s=%.6f new_conns_last=%ld\n", calls, c1 - c0, w1 - w0, conns);
  curl_easy_cleanup(e);
  curl_global_cleanup();
  free(b.data);
  return 0;
}
