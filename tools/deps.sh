#!/usr/bin/env bash
# Installs the Debian packages viggle needs, when they are missing.
#   tools/deps.sh          build + test + demo (every interpreter, the mock server)
#   tools/deps.sh bench    also the peers the benchmarks compare against
#   tools/deps.sh fuzz     also clang and its libFuzzer runtime (make fuzz)
# LuaJIT comes from luajit2/libluajit2-5.1-dev: the plain luajit packages would
# make apt remove the nginx Lua module the mock server runs on.
set -euo pipefail
pkgs=(
  make gcc libc6-dev pkg-config libcurl4-openssl-dev curl ca-certificates
  lua5.1 lua5.2 lua5.3 lua5.4 liblua5.1-0-dev liblua5.2-dev liblua5.3-dev liblua5.4-dev
  luajit2 libluajit2-5.1-dev
  lua-cjson lua-busted lua-check lua-luv lua-sql-sqlite3
  nginx-light libnginx-mod-http-lua
  valgrind cppcheck neovim luarocks
)
if [ "${1:-}" = bench ]; then
  pkgs+=(lua-socket lua-sec python3-requests gnuplot-nox hyperfine time openssl)
fi
if [ "${1:-}" = fuzz ]; then
  pkgs+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
