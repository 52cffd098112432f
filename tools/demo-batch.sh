#!/usr/bin/env bash
# A batch killed halfway and resumed, against the local mock server (no
# account needed): 12 renders, the batch process is killed with SIGKILL in
# the middle, `viggle batch status` shows what the journal kept, and the same
# command run again finishes the work without paying twice.
#   tools/demo-batch.sh [--no-deps] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --no-deps ]; then shift; else bash tools/deps.sh; fi
make -s LUA=5.4
work=${1:-$(mktemp -d)}
mkdir -p "$work/out"
# shellcheck source=tools/mock-env.sh
. tools/mock-env.sh
# Each answer takes 0.2 s, a render 1.5 s, a download 0.5 s: there is time to see it.
curl -fsS -XPOST "$VIGGLE_BASE_URL/_mock/config" \
  -d '{"delay": 0.2, "cdn_delay": 0.5, "render_job": {"advance": "time", "step": 0.3}}' >/dev/null
echo "mock Viggle API at $VIGGLE_BASE_URL; batch in $work"

# 12 renders: one character image, 12 motion videos (copies of the demo clip, each its own file)
cp spec/mock/files/character.png "$work/hero.png"
: >"$work/manifest.jsonl"
for i in $(seq 1 12); do
  cp spec/mock/files/demo.mp4 "$work/move$i.mp4"
  printf 'take %d' "$i" >>"$work/move$i.mp4"
  printf '{"key": "shot-%02d", "ref_image": "hero.png", "driving_video": "move%d.mp4", "output": "out/shot-%02d.mp4"}\n' \
    "$i" "$i" "$i" >>"$work/manifest.jsonl"
done
echo "+ viggle batch $work/manifest.jsonl   (killed with SIGKILL once half the items are submitted)"
bin/viggle batch "$work/manifest.jsonl" --interval 0.3 &
pid=$!
for _ in $(seq 1 100); do # the journal says how far it got
  n=$(bin/viggle batch status "$work/manifest.jsonl" --json 2>/dev/null |
      lua5.4 -e 'local ok, t = pcall(require("cjson").decode, io.read("a")) print(ok and t.counts.submitted or 0)' || true)
  [ "${n%.*}" -ge 6 ] && break
  sleep 0.05
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
echo
echo "+ viggle batch status $work/manifest.jsonl   (the journal's view; no API call)"
bin/viggle batch status "$work/manifest.jsonl"
echo
echo "+ viggle batch $work/manifest.jsonl   (the same command: resumes)"
if ! bin/viggle batch "$work/manifest.jsonl" --interval 0.3; then
  echo
  echo "+ viggle batch $work/manifest.jsonl --resubmit-uncertain   (the user's call: those may be paid twice)"
  bin/viggle batch "$work/manifest.jsonl" --interval 0.3 --resubmit-uncertain
fi
echo
made=$(curl -fsS "$VIGGLE_BASE_URL/_mock/posts" | lua5.4 -e 'print(math.floor(require("cjson").decode(io.read("a")).made))')
echo "renders the server made: $made for 12 items (one more per item reported uncertain, if any)"
echo "videos on disk: $(ls "$work"/out/*.mp4 | wc -l) in $work/out"
