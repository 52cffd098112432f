/*
 * part.c: the file a download is written to, `<path>.part`, and the record
 * of where its bytes came from, `<path>.part.meta` (the validator, ETag or
 * Last-Modified, that a resume sends as If-Range).
 *
 * core.open_part(path, overwrite) opens the .part without following a
 * symbolic link, refuses one that is not a regular file of ours with one
 * name, and holds an exclusive lock (flock) on it until closed: a second
 * downloader of the same path is refused (LOCKED) and never writes into it.
 * The request writes through its own dup of the descriptor (request.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vg.h"

#define VG_META_CAP 1024 /* a validator is a short line */

/* Opens `name` for writing or reading without following a link, and checks
   it is a regular file of ours with no other name. -1 with errno set (EPERM:
   not ours, EMLINK: other names, EINVAL: not a regular file). */
static int open_own(const char *name, int flags, struct stat *st) {
  int fd = open(name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
  int en = EINVAL;
  if (fd < 0) return -1;
  if (fstat(fd, st) != 0) en = errno;
  else if (!S_ISREG(st->st_mode)) en = EINVAL;
  else if (st->st_uid != geteuid()) en = EPERM;
  else if (st->st_nlink != 1) en = EMLINK;
  else return fd;
  close(fd);
  errno = en;
  return -1;
}

static char *join(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  char *s = malloc(na + nb + 1);
  if (s == NULL) return NULL;
  memcpy(s, a, na);
  memcpy(s + na, b, nb + 1);
  return s;
}

int vg_part_restart(int fd, const char *meta, const char *validator, size_t n) {
  struct stat st;
  int mfd, en = 0;
  /* An empty file is left alone: ext4 flushes a file truncated to zero when
     it is closed (auto_da_alloc), which made the close at the end of a
     100 MB download cost a game loop's step ~7 ms of CPU. */
  if (fstat(fd, &st) != 0) return errno;
  if (st.st_size > 0 && ftruncate(fd, 0) != 0) return errno;
  if (validator == NULL || n == 0) {
    if (unlink(meta) != 0 && errno != ENOENT) return errno;
    return 0;
  }
  mfd = open_own(meta, O_WRONLY | O_CREAT, &st);
  if (mfd < 0) return errno;
  if (ftruncate(mfd, 0) != 0 || write(mfd, validator, n) != (ssize_t)n) en = errno ? errno : EIO;
  if (close(mfd) != 0 && en == 0) en = errno;
  return en;
}

size_t vg_part_validator(const char *meta, char *out, size_t cap) {
  struct stat st;
  ssize_t n;
  int fd = open_own(meta, O_RDONLY, &st);
  if (fd < 0) return 0;
  n = read(fd, out, cap - 1);
  close(fd);
  if (n <= 0 || memchr(out, '\n', (size_t)n) != NULL || memchr(out, '\r', (size_t)n) != NULL) return 0;
  out[n] = '\0';
  return (size_t)n;
}

vg_part *vg_checkpart(lua_State *L, int idx) {
  vg_part *p = luaL_checkudata(L, idx, VG_PART_MT);
  if (p->fd < 0) luaL_argerror(L, idx, "part is closed");
  return p;
}

static int part_error(lua_State *L, const vg_part *p, int en) {
  const char *why;
  switch (en) {
    case ELOOP: why = "is a symbolic link: refusing to follow it"; break;
    case EINVAL: why = "is not a regular file"; break;
    case EPERM: why = "belongs to another user"; break;
    case EMLINK: why = "has other names (hard links)"; break;
    default: why = strerror(en);
  }
  lua_pushfstring(L, "%s %s", p->part, why);
  return vg_fail(L, lua_tostring(L, -1), "IO_ERROR");
}

/* Locks the open .part; 0, or an errno (EAGAIN when another holds it). A
   file renamed away (a download that just ended) is not the .part any more:
   ESTALE, and the caller opens the name again. */
static int lock_part(const vg_part *p, const struct stat *st) {
  struct stat now;
  if (flock(p->fd, LOCK_EX | LOCK_NB) != 0) return errno == EWOULDBLOCK ? EAGAIN : errno;
  if (lstat(p->part, &now) != 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino) return ESTALE;
  return 0;
}

static int part_open(lua_State *L, vg_part *p) {
  int tries, en = 0;
  for (tries = 0; tries < 3; tries++) {
    struct stat st;
    p->fd = open_own(p->part, O_RDWR | O_CREAT | O_APPEND, &st);
    if (p->fd < 0) return part_error(L, p, errno);
    en = lock_part(p, &st);
    if (en == 0) return 0;
    close(p->fd);
    p->fd = -1;
    if (en != ESTALE) break;
  }
  if (en == EAGAIN || en == ESTALE) {
    lua_pushfstring(L, "another download to %s is in progress (%s is locked)", p->path, p->part);
    return vg_fail(L, lua_tostring(L, -1), "LOCKED");
  }
  return part_error(L, p, en);
}

/* core.open_part(path, overwrite) -> part, or nil, message, code (EXISTS
   when path exists and overwrite is false, LOCKED, IO_ERROR). */
int vg_part_new(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int overwrite = lua_toboolean(L, 2), failed;
  struct stat st;
  vg_part *p = lua_newuserdata(L, sizeof *p);
  memset(p, 0, sizeof *p);
  p->fd = -1; /* closed first: safe to collect at every step below */
  luaL_getmetatable(L, VG_PART_MT);
  lua_setmetatable(L, -2);
  p->path = join(path, "");
  p->part = join(path, ".part");
  p->meta = join(path, ".part.meta");
  if (p->path == NULL || p->part == NULL || p->meta == NULL) return vg_fail(L, "out of memory", "OUT_OF_MEMORY");
  if (!overwrite && lstat(path, &st) == 0) {
    lua_pushfstring(L, "%s exists", path);
    return vg_fail(L, lua_tostring(L, -1), "EXISTS");
  }
  failed = part_open(L, p);
  return failed ? failed : 1;
}

/* part:size() -> bytes in the .part */
static int part_size(lua_State *L) {
  vg_part *p = vg_checkpart(L, 1);
  struct stat st;
  if (fstat(p->fd, &st) != 0) return part_error(L, p, errno);
  lua_pushnumber(L, (lua_Number)st.st_size);
  return 1;
}

/* part:validator() -> the ETag or Last-Modified its bytes came with, or nil */
static int part_validator(lua_State *L) {
  vg_part *p = vg_checkpart(L, 1);
  char v[VG_META_CAP];
  size_t n = vg_part_validator(p->meta, v, sizeof v);
  if (n == 0) lua_pushnil(L); else lua_pushlstring(L, v, n);
  return 1;
}

/* part:reset(): forget the bytes (empty .part, no validator) */
static int part_reset(lua_State *L) {
  vg_part *p = vg_checkpart(L, 1);
  int en = vg_part_restart(p->fd, p->meta, NULL, 0);
  if (en != 0) return part_error(L, p, en);
  lua_pushboolean(L, 1);
  return 1;
}

/* True when the .part name still is the file we hold. */
static int still_ours(const vg_part *p) {
  struct stat a, b;
  return fstat(p->fd, &a) == 0 && lstat(p->part, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* part:commit(): the .part becomes path (rename: a link planted at path is
   replaced, never followed); the validator goes. */
static int part_commit(lua_State *L) {
  vg_part *p = vg_checkpart(L, 1);
  if (!still_ours(p)) return part_error(L, p, ESTALE);
  if (rename(p->part, p->path) != 0) return part_error(L, p, errno);
  unlink(p->meta);
  lua_pushboolean(L, 1);
  return 1;
}

/* part:remove(): deletes the .part and its validator (when still ours) */
static int part_remove(lua_State *L) {
  vg_part *p = vg_checkpart(L, 1);
  if (still_ours(p)) {
    unlink(p->part);
    unlink(p->meta);
  }
  return 0;
}

/* One close serves close, __gc and __close: the lock goes with the fd. */
static int part_close(lua_State *L) {
  vg_part *p = luaL_checkudata(L, 1, VG_PART_MT);
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  free(p->path);
  free(p->part);
  free(p->meta);
  p->path = p->part = p->meta = NULL;
  return 0;
}

static const luaL_Reg part_methods[] = {
  {"size", part_size},
  {"validator", part_validator},
  {"reset", part_reset},
  {"commit", part_commit},
  {"remove", part_remove},
  {"close", part_close},
  {NULL, NULL}
};

static const luaL_Reg part_meta[] = {
  {"__gc", part_close},
  {"__close", part_close},
  {NULL, NULL}
};

void vg_part_open(lua_State *L) {
  luaL_newmetatable(L, VG_PART_MT);
  vg_setfuncs(L, part_meta, 0);
  lua_newtable(L);
  vg_setfuncs(L, part_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
