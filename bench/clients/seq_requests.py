"""Sequential status calls with Python requests and one Session (keep-alive).

    /usr/bin/python3 bench/clients/seq_requests.py BASE_URL JOB_ID CALLS WARMUP [CA_FILE]

Prints calls=N cpu_s=X wall_s=Y (CPU: time.process_time, user+sys of this
process, over the timed calls only).
"""
import sys
import time

import requests

base, job_id = sys.argv[1], sys.argv[2]
calls, warmup = int(sys.argv[3]), int(sys.argv[4])
ca_file = sys.argv[5] if len(sys.argv) > 5 else True
url = base + "/api/render/" + job_id
session = requests.Session()
session.headers["Accept"] = "application/json"


def run(n):
    for _ in range(n):
        r = session.get(url, verify=ca_file, timeout=30)
        r.raise_for_status()
        if r.json()["status"] != "complete":
            raise SystemExit("unexpected status")


run(warmup)
c0, w0 = time.process_time(), time.monotonic()
run(calls)
c1, w1 = time.process_time(), time.monotonic()
print("calls=%d cpu_s=%.6f wall_s=%.6f" % (calls, c1 - c0, w1 - w0))
