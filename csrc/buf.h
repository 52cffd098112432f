/*
 * buf.h: a growable byte buffer owned by C (as lua-cjson keeps its strbuf).
 * libcurl callbacks only ever append here; json.c builds its rewritten text
 * in one. Nothing here knows about Lua or libcurl.
 */
#ifndef VG_BUF_H
#define VG_BUF_H

#include <stddef.h>

typedef struct vg_buf {
  char *data;
  size_t len, cap;
} vg_buf;

/* Appends n bytes; 0, or -1 when memory runs out (the buffer is unchanged). */
int vg_buf_append(vg_buf *b, const char *p, size_t n);
/* Empties the buffer for reuse; a buffer grown past `keep` bytes is freed. */
void vg_buf_clear(vg_buf *b, size_t keep);
void vg_buf_free(vg_buf *b);

#endif
