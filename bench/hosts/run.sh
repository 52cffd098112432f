#!/usr/bin/env bash
# The host benchmarks of issue 11 (game loop, nginx, big upload), one after
# the other; rows in bench/out/hosts.txt, the markdown in bench/out/hosts.md,
# and (full runs) in bench/README.md's "Hosts (issue 11)" section.
#   bash bench/hosts/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p bench/out
make -s LUA=5.4 >/dev/null
make -s LUA=jit >/dev/null
quick=${1:-}
out=bench/out/hosts.txt
: >"$out"
if [ "$quick" = --quick ]; then
  lua5.4 bench/hosts/gameloop.lua 20 40 | tee -a "$out"
  lua5.4 bench/hosts/nginx.lua --quick | tee -a "$out"
  lua5.4 bench/hosts/upload.lua 100 1 | tee -a "$out"
else
  ROUNDS=5 lua5.4 bench/hosts/gameloop.lua 60 300 | tee -a "$out"
  lua5.4 bench/hosts/nginx.lua | tee -a "$out"
  lua5.4 bench/hosts/upload.lua 500 2 | tee -a "$out"
fi
lua5.4 bench/hosts/report.lua <"$out" >bench/out/hosts.md
cat bench/out/hosts.md
if [ "$quick" != --quick ]; then
  lua5.4 bench/hosts/splice.lua "Load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)."
fi
