# Sourced by the demos (tools/demo.sh, tools/demo-assets.sh), from the checkout's root:
# builds the module for Lua 5.4, starts the local mock API for the rest of the script
# (stopped when it exits) and exports VIGGLE_BASE_URL and VIGGLE_API_KEY for it.
make -s LUA=5.4
state=$(mktemp -d)/mock.env
lua5.4 spec/mock/server.lua start --state "$state" >/dev/null
trap 'lua5.4 spec/mock/server.lua stop --state "$state" >/dev/null 2>&1 || true; rm -rf "$(dirname "$state")"' EXIT
# shellcheck disable=SC1090
. "$state"
export VIGGLE_BASE_URL
export VIGGLE_API_KEY=sk-test-valid
