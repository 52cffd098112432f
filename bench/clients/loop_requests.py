"""The plain loop of the API docs with Python requests: one job after
another, each polled with a Session until it is final.

    /usr/bin/python3 bench/clients/loop_requests.py BASE_URL IDS_FILE [CA_FILE]

Prints jobs=N wall_s=X cpu_s=Y complete=C other=O.
"""
import sys
import time

import requests

base, ids_file = sys.argv[1], sys.argv[2]
verify = sys.argv[3] if len(sys.argv) > 3 else True
with open(ids_file) as f:
    ids = [line.strip() for line in f if line.strip()]
session = requests.Session()
complete = other = 0
c0, w0 = time.process_time(), time.monotonic()
for job_id in ids:
    while True:
        r = session.get(base + "/api/render/" + job_id, verify=verify, timeout=30)
        r.raise_for_status()
        status = r.json()["status"]
        if status in ("complete", "failed", "cancelled"):
            break
        time.sleep(0.5)
    if status == "complete":
        complete += 1
    else:
        other += 1
c1, w1 = time.process_time(), time.monotonic()
print("jobs=%d wall_s=%.6f cpu_s=%.6f complete=%d other=%d" % (len(ids), w1 - w0, c1 - c0, complete, other))
