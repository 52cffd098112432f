"""Download with Python requests.

    /usr/bin/python3 bench/clients/download_requests.py MODE URL PATH

MODE content: the API docs' example, open(path, "wb").write(requests.get(url).content)
MODE iter:    streamed, stream=True and iter_content(chunk_size=1 MiB)
Prints bytes=N wall_s=X cpu_s=Y.
"""
import sys
import time

import requests

mode, url, path = sys.argv[1], sys.argv[2], sys.argv[3]
c0, w0 = time.process_time(), time.monotonic()
if mode == "content":
    r = requests.get(url, timeout=60)
    r.raise_for_status()
    with open(path, "wb") as f:
        n = f.write(r.content)
elif mode == "iter":
    n = 0
    with requests.get(url, stream=True, timeout=60) as r:
        r.raise_for_status()
        with open(path, "wb") as f:
            for chunk in r.iter_content(chunk_size=1 << 20):
                n += f.write(chunk)
else:
    raise SystemExit("mode must be content or iter")
c1, w1 = time.process_time(), time.monotonic()
print("bytes=%d wall_s=%.6f cpu_s=%.6f" % (n, w1 - w0, c1 - c0))
