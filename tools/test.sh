#!/usr/bin/env bash
# Every test: builds the module for each Lua, lints, runs the busted specs
# (against the nginx mock server) on each interpreter. Installs nothing: run
# tools/deps.sh (make deps) first on a fresh machine.
#   tools/test.sh                 all of 5.1 5.2 5.3 5.4 jit
#   tools/test.sh 5.4             one (or a list)
# The last line is "N passed, N failed" (N counts specs and checks).
set -uo pipefail
cd "$(dirname "$0")/.."
luas=("$@")
[ ${#luas[@]} -eq 0 ] && luas=(5.1 5.2 5.3 5.4 jit)
passed=0 failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

check() { # name, command...: one check that passes or fails as a whole
  local name=$1; shift
  if "$@" >"$log/check.out" 2>&1; then
    passed=$((passed + 1)); echo "ok - $name"
  else
    failed=$((failed + 1)); echo "not ok - $name"; sed 's/^/    /' "$log/check.out" | tail -40
  fi
}

check "lint (luacheck, cppcheck)" make -s lint
check "mutants apply (tools/mutants.txt)" lua5.4 tools/mutate.lua --check
for v in "${luas[@]}"; do
  if ! make -s LUA="$v" >"$log/build.out" 2>&1; then
    failed=$((failed + 1)); echo "not ok - build for Lua $v"; cat "$log/build.out"; continue
  fi
  bin=lua$v; [ "$v" = jit ] && bin=luajit
  echo "# specs on $bin"
  LUA_CPATH="./build/$v/?.so;;" busted --lua="$bin" -o TAP spec >"$log/tap.out" 2>&1
  rc=$?
  sed "s/^/[$v] /" "$log/tap.out" | grep -v '^\[.*\] ok ' || true
  p=$(grep -c '^ok ' "$log/tap.out"); f=$(grep -c '^not ok ' "$log/tap.out")
  echo "# $bin: $p passed, $f failed"
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then # busted itself failed (a spec file did not load)
    failed=$((failed + 1)); echo "not ok - busted on $bin exited $rc"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
