# Sourced by the demos: starts the local mock Viggle API in the background,
# stops it when the script exits, and exports VIGGLE_BASE_URL and a valid
# VIGGLE_API_KEY. (Run from the repository's root, with the module built.)
mock_state=$(mktemp -d)/mock.env
lua5.4 spec/mock/server.lua start --state "$mock_state" >/dev/null
trap 'lua5.4 spec/mock/server.lua stop --state "$mock_state" >/dev/null 2>&1 || true; rm -rf "$(dirname "$mock_state")"' EXIT
# shellcheck disable=SC1090
. "$mock_state"
export VIGGLE_BASE_URL
export VIGGLE_API_KEY=sk-test-valid
