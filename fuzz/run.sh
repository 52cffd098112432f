#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, -fsanitize=fuzzer,address,undefined)
# and runs each for N seconds on its seed corpus (fuzz/corpus/NAME), the new
# inputs it finds going to build/fuzz/corpus/NAME (the committed seeds stay
# as they are).   fuzz/run.sh [SECONDS] [NAME...]   (make fuzz FUZZ_SECONDS=N)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}; shift || true
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(response request)
out=build/fuzz
mkdir -p "$out"
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
flags="$flags -std=c99 -D_POSIX_C_SOURCE=200809L $(pkg-config --cflags lua5.4 libcurl)"
libs="$(pkg-config --libs lua5.4 libcurl) -lhiredis -lm -pthread"
for name in "${names[@]}"; do
  srcs=(csrc/core.c csrc/multi.c csrc/part.c csrc/json.c csrc/buf.c csrc/error.c csrc/redis.c csrc/worker.c)
  [ "$name" = request ] && srcs+=(csrc/request.c) # the response harness includes it
  ${FUZZ_CC:-clang} $flags -o "$out/fuzz_$name" "fuzz/fuzz_$name.c" "${srcs[@]}" $libs
  mkdir -p "$out/corpus/$name"
  echo "== fuzz_$name: $seconds s"
  # -detect_leaks=0: the Lua heap grows between collections, and libFuzzer
  # would run a leak scan after every such input (100x slower); leaks are
  # make valgrind's part.
  "$out/fuzz_$name" -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 -detect_leaks=0 \
    -artifact_prefix="$out/$name-" "$out/corpus/$name" "fuzz/corpus/$name"
done
