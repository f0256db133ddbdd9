"""Shows the LocalStack S3 fault behind the old claim hang; not part of the suite.

Claim contenders create a small object with `If-None-Match: *` and read it; its holder deletes
it. When a GetObject of a key meets a concurrent DeleteObject of it, LocalStack can keep the read
lock of that key's storage for good (the GET fails between opening the stored object and
returning it, or while iterating a file the DELETE closed, and the lock is never released); every
later PutObject of the key then waits forever for the write lock. promote therefore reads its
control objects with HEAD (no body is opened), see core/src/control_metadata.rs.

Usage, with a server from tests/s3/server.sh:
    target/s3-venv/bin/python tests/s3/get-delete-race.py "$PROMOTE_TEST_S3_ENDPOINT" [SECONDS]
It prints "STUCK" and the requests that timed out when the key got wedged (seen within 40 s
with 4 writers and 4 readers on the 2-core machine), else "no hang".
"""

import sys
import threading
import time

import boto3
from botocore.config import Config

ENDPOINT = sys.argv[1]
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 60
BUCKET, KEY = "promote-test", "repro/claim-%d.json" % int(time.time() * 1000)
stop = time.time() + SECONDS
lock = threading.Lock()
stuck, counts = [], {}


def client():
    config = Config(read_timeout=8, connect_timeout=5, retries={"max_attempts": 0})
    return boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=config)


def attempt(name, call):
    started = time.time()
    try:
        call()
        with lock:
            counts[name] = counts.get(name, 0) + 1
    except Exception as e:  # noqa: BLE001 - 404 and 412 are expected; only timeouts matter
        if "timeout" in str(e).lower() or "timed out" in str(e):
            with lock:
                stuck.append((name, round(time.time() - started, 1), str(e)[:100]))


def reader():
    s3 = client()
    while time.time() < stop and not stuck:
        attempt("get", lambda: s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())


def writer():
    s3 = client()
    while time.time() < stop and not stuck:
        attempt("create", lambda: s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"x" * 200, IfNoneMatch="*"))
        attempt("delete", lambda: s3.delete_object(Bucket=BUCKET, Key=KEY))


threads = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=writer) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(counts)
print("STUCK" if stuck else "no hang")
for s in stuck[:10]:
    print(s)
