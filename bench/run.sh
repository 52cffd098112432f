#!/usr/bin/env bash
# The benchmarks of issue 6: viggle against its peers on this machine, in one run.
#   bash bench/run.sh            # full run (about 10 minutes), writes bench/README.md and bench/*.png
#   bash bench/run.sh --quick    # smoke run (a minute or two), writes bench/out/README.quick.md
#   bash bench/run.sh --only 1,5 # some scenarios (writes bench/out/README.partial.md)
# Set-up: bash tools/deps.sh bench. Every server this starts listens on
# 127.0.0.1 only and is stopped at the end, also when the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for c in lua5.4 nginx curl gcc pkg-config /usr/bin/python3 /usr/bin/time gnuplot hyperfine openssl md5sum; do
  command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
lua5.4 -e 'require "socket"; require "ssl"; require "cjson"' 2>/dev/null || missing+=("lua-socket/lua-sec/lua-cjson")
/usr/bin/python3 -c 'import requests' 2>/dev/null || missing+=("python3-requests")
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: missing: ${missing[*]} (run: bash tools/deps.sh bench)" >&2
  exit 1
fi

mkdir -p bench/out/pids bench/out/tmp

# Stops what a run started (listed in bench/out/pids as "PID PREFIX"): only a
# process that still is an nginx, and only prefixes this harness makes.
cleanup() {
  local f pid prefix
  for f in bench/out/pids/*; do
    [ -e "$f" ] || continue
    read -r pid prefix <"$f" || true
    if [ -n "${pid:-}" ] && [ "$pid" != 0 ] && grep -q nginx "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    case "${prefix:-}" in
      /tmp/viggle-mock.*|"${TMPDIR:-/tmp}"/viggle-mock.*|/tmp/viggle-bench-lib.*|"${TMPDIR:-/tmp}"/viggle-bench-lib.*|\
      /dev/shm/viggle-bench.*|"$PWD"/bench/out/*) rm -rf "$prefix" ;;
    esac
    rm -f "$f"
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make -s LUA=5.4 >/dev/null
# A snapshot of the library under test (lua/, bin/, the built module): every
# viggle client of this run loads it, so edits to the checkout during the run
# cannot mix two versions into one report. It is named by the commit and, if
# lua/, csrc/ or bin/ differ from it, a hash of that diff.
# (Outside the checkout, so that luacheck on bench/ never sees the copy.)
rm -rf bench/out/snapshot
snap=$(mktemp -d "${TMPDIR:-/tmp}/viggle-bench-lib.XXXXXXXX")
echo "0 $snap" >bench/out/pids/snapshot
mkdir -p "$snap/build/5.4/viggle"
cp -R lua bin "$snap/"
cp build/5.4/viggle/core.so "$snap/build/5.4/viggle/core.so"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
lib_commit=$(git log -1 --format=%h -- lua csrc bin 2>/dev/null || true)
[ -n "$lib_commit" ] && [ "$lib_commit" != "$commit" ] && commit="$commit (lua/, csrc/, bin/ last changed in $lib_commit)"
if [ -n "$(git status --porcelain -- lua csrc bin 2>/dev/null)" ]; then
  commit="$commit + uncommitted changes to lua/, csrc/ or bin/ (diff sha1 $(git diff HEAD -- lua csrc bin | sha1sum | cut -c1-10))"
fi
export VIGGLE_BENCH_ROOT="$snap" VIGGLE_BENCH_COMMIT="$commit"
CURL_FLAGS=$(pkg-config --cflags --libs libcurl)
# shellcheck disable=SC2086
gcc -O2 -Wall -Wextra -o bench/out/raw_curl bench/raw_curl.c $CURL_FLAGS
# shellcheck disable=SC2086
gcc -O2 -Wall -Wextra -o bench/out/raw_multi bench/raw_multi.c $CURL_FLAGS

# The mock's nginx runs on CPU 1 (clients on CPU 0) when there are two CPUs.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  printf '#!/bin/sh\nexec taskset -c 1 nginx "$@"\n' >bench/out/nginx-pinned
  chmod +x bench/out/nginx-pinned
  export VIGGLE_MOCK_NGINX="$PWD/bench/out/nginx-pinned"
fi

lua5.4 bench/bench.lua "$@"
