#!/usr/bin/env bash
# The main job, end to end, against the local mock server (no account needed):
# render from two local files, follow the job with live progress, download
# the MP4 and print where it is.
#   tools/demo.sh [OUTPUT.mp4]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --no-deps ]; then shift; else bash tools/deps.sh; fi
out=${1:-demo-output.mp4}
make -s LUA=5.4
# shellcheck source=tools/mock-env.sh
. tools/mock-env.sh
# The mock renders in five stages of 0.8 s each, so the progress can be watched.
curl -fsS -XPOST "$VIGGLE_BASE_URL/_mock/config" -d '{"render_job": {"advance": "time", "step": 0.8}}' >/dev/null
echo "mock Viggle API at $VIGGLE_BASE_URL"
echo "+ viggle render --image spec/mock/files/character.png --video spec/mock/files/demo.mp4 --wait --interval 0.5 -o $out --overwrite"
bin/viggle render --image spec/mock/files/character.png --video spec/mock/files/demo.mp4 \
  --wait --interval 0.5 -o "$out" --overwrite
echo "the video is at $(readlink -f "$out")"
