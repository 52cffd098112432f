#!/bin/sh
# bin/viggle as `make install` puts it: runs the viggle-<lua> launcher installed
# beside it, the newest Lua first (VIGGLE_LUA=5.1|5.2|5.3|5.4|jit picks one).
dir=$(dirname "$0")
for v in ${VIGGLE_LUA:-5.4 5.3 5.2 jit 5.1}; do
  if [ -x "$dir/viggle-$v" ]; then exec "$dir/viggle-$v" "$@"; fi
done
echo "viggle: no launcher viggle-${VIGGLE_LUA:-<lua>} in $dir (make install LUA=...)" >&2
exit 1
