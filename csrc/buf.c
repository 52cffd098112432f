/*
 * buf.c: the growable byte buffer (buf.h).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int vg_buf_append(vg_buf *b, const char *p, size_t n) {
  if (n > (size_t)-1 - b->len) return -1;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *d;
    while (cap < b->len + n) {
      if (cap > (size_t)-1 / 2) { cap = b->len + n; break; }
      cap *= 2;
    }
    d = realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
  }
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void vg_buf_clear(vg_buf *b, size_t keep) {
  if (b->cap > keep) vg_buf_free(b);
  b->len = 0;
}

void vg_buf_free(vg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
