#!/usr/bin/env bash
# The spec suite (Lua 5.4) under valgrind memcheck or AddressSanitizer.
#   tools/memcheck.sh valgrind [SPEC...]   errors and definite leaks fail the run
#   tools/memcheck.sh asan [SPEC...]       the module built with -fsanitize=address
#   tools/memcheck.sh tsan                 ThreadSanitizer on the transfer thread (tools/tsan_load.lua)
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-valgrind}; shift || true
specs=("$@"); [ ${#specs[@]} -eq 0 ] && specs=(spec)
case "$mode" in
  valgrind)
    make -s LUA=5.4 || exit 1
    # --trace-children=no: the mock's nginx and curl are not ours to check.
    LUA_CPATH="./build/5.4/?.so;;" valgrind --quiet --error-exitcode=99 --leak-check=full \
      --errors-for-leak-kinds=definite --show-leak-kinds=definite --track-origins=yes \
      --suppressions=tools/valgrind.supp \
      lua5.4 /usr/bin/busted -o TAP "${specs[@]}"
    ;;
  asan)
    # the Makefile's own build (same warnings, sources and libraries), into build/asan
    make -s LUA=5.4 BUILD=build/asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
      SANFLAGS="-fsanitize=address,undefined" || exit 1
    asan=$(cc -print-file-name=libasan.so)
    ubsan=$(cc -print-file-name=libubsan.so)
    # The runtime is preloaded into the (uninstrumented) interpreter; the
    # mock's nginx and the curl it is driven with are started without it
    # (wrappers first on PATH). Leaks are valgrind's part (make valgrind):
    # here ASan and UBSan check every memory access the module makes.
    wrap=$(mktemp -d)
    trap 'rm -rf "$wrap"' EXIT
    for tool in nginx curl; do
      printf '#!/bin/sh\nexec env -u LD_PRELOAD %s "$@"\n' "$(command -v $tool)" >"$wrap/$tool"
      chmod +x "$wrap/$tool"
    done
    PATH="$wrap:$PATH" LUA_CPATH="./build/asan/?.so;;" LD_PRELOAD="$asan $ubsan" \
      ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=98 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      lua5.4 /usr/bin/busted -o TAP "${specs[@]}"
    ;;
  tsan)
    # gcc's runtime (clang 14's crashes at start on this kernel), ASLR off as
    # TSan needs. A shell under the TSan runtime crashes, so no spec runs
    # here: tools/tsan_load.lua drives the thread against a mock started first.
    make -s LUA=5.4 BUILD=build/tsan CC=gcc CFLAGS="-O1 -g" SANFLAGS="-fsanitize=thread" || exit 1
    state=$(mktemp)
    trap 'lua5.4 spec/mock/server.lua stop --state "$state" >/dev/null 2>&1; rm -f "$state"' EXIT
    lua5.4 spec/mock/server.lua start --state "$state" >/dev/null || exit 1
    set -a; . "$state"; set +a
    curl -s -XPOST "$VIGGLE_BASE_URL/_mock/config" -d '{"big_size": 104857600}' >/dev/null
    LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./build/tsan/?.so;;" \
      TSAN_OPTIONS="halt_on_error=1 exitcode=97" \
      setarch -R env LD_PRELOAD="$(gcc -print-file-name=libtsan.so)" lua5.4 tools/tsan_load.lua
    ;;
  *) echo "usage: tools/memcheck.sh valgrind|asan|tsan [SPEC...]" >&2; exit 2 ;;
esac
