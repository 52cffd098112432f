/*
 * error.c: how viggle.core fails. The world's refusals come back as
 * nil, message, code (vg_fail); libcurl's result codes get their names from
 * one table (the Lua layer maps names to error kinds: lua/viggle/errors.lua).
 */
#include "vg.h"

int vg_fail(lua_State *L, const char *msg, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

#define NAMED(c) {CURLE_##c, #c}

static const struct {
  CURLcode code;
  const char *name;
} curl_names[] = {
  NAMED(UNSUPPORTED_PROTOCOL), NAMED(FAILED_INIT), NAMED(URL_MALFORMAT),
  NAMED(COULDNT_RESOLVE_PROXY), NAMED(COULDNT_RESOLVE_HOST), NAMED(COULDNT_CONNECT),
  NAMED(WEIRD_SERVER_REPLY), NAMED(HTTP2), NAMED(PARTIAL_FILE), NAMED(HTTP_RETURNED_ERROR),
  NAMED(WRITE_ERROR), NAMED(UPLOAD_FAILED), NAMED(READ_ERROR), NAMED(OUT_OF_MEMORY),
  NAMED(OPERATION_TIMEDOUT), NAMED(RANGE_ERROR), NAMED(SSL_CONNECT_ERROR),
  NAMED(BAD_FUNCTION_ARGUMENT), NAMED(INTERFACE_FAILED), NAMED(TOO_MANY_REDIRECTS),
  NAMED(GOT_NOTHING), NAMED(SEND_ERROR), NAMED(RECV_ERROR), NAMED(SSL_CERTPROBLEM),
  NAMED(SSL_CIPHER), NAMED(PEER_FAILED_VERIFICATION), NAMED(BAD_CONTENT_ENCODING),
  NAMED(SEND_FAIL_REWIND), NAMED(SSL_CACERT_BADFILE), NAMED(SSL_SHUTDOWN_FAILED),
  NAMED(AGAIN), NAMED(SSL_CRL_BADFILE), NAMED(SSL_ISSUER_ERROR), NAMED(HTTP2_STREAM),
  NAMED(HTTP3), NAMED(QUIC_CONNECT_ERROR), NAMED(PROXY), NAMED(SSL_CLIENTCERT),
  NAMED(UNRECOVERABLE_POLL),
  /* the two the Lua layer knows by shorter names */
  {CURLE_FILESIZE_EXCEEDED, "TOO_LARGE"},
  {CURLE_ABORTED_BY_CALLBACK, "ABORTED"},
};

const char *vg_curl_name(CURLcode c) {
  size_t i;
  for (i = 0; i < sizeof curl_names / sizeof curl_names[0]; i++)
    if (curl_names[i].code == c) return curl_names[i].name;
  return "CURL_ERROR";
}
