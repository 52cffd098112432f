#!/usr/bin/env bash
# The preprocessed workflow, end to end, against the local mock server (no
# account needed): a character (from an image) and a scene (from a video) are
# made once, followed until ready, then two renders are made from them,
# followed and downloaded.
#   tools/demo-assets.sh [--no-deps] [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --no-deps ]; then shift; else bash tools/deps.sh; fi
out=${1:-demo-assets-output}
mkdir -p "$out"
make -s LUA=5.4
# shellcheck source=tools/mock-env.sh
. tools/mock-env.sh
# The mock preprocesses an asset in three stages of 0.8 s and renders in five of 0.5 s.
curl -fsS -XPOST "$VIGGLE_BASE_URL/_mock/config" \
  -d '{"asset_job": {"advance": "time", "step": 0.8}, "render_job": {"advance": "time", "step": 0.5}}' >/dev/null
echo "mock Viggle API at $VIGGLE_BASE_URL"
run() { echo "+ viggle $*"; bin/viggle "$@"; }

echo "== made once: a character and a scene"
echo "+ viggle characters create --name Ada --image spec/mock/files/character.png"
character=$(bin/viggle characters create --name Ada --image spec/mock/files/character.png)
echo "$character"
echo "+ viggle scenes create --name Dance --video spec/mock/files/demo.mp4"
scene=$(bin/viggle scenes create --name Dance --video spec/mock/files/demo.mp4)
echo "$scene"
run characters wait "$character" --interval 0.5
run scenes wait "$scene" --interval 0.5

echo "== used twice: two renders from them, nothing uploaded again"
for i in 1 2; do
  run render --character "$character" --scene "$scene" --wait --interval 0.5 -o "$out/render-$i.mp4" --overwrite
done
run characters list
run scenes get "$scene"
run credits
echo "the videos are in $(readlink -f "$out")"
