"""Probe what a local S3 server (started by server.sh) does with the requests promote relies on.

Usage (with the venv's python, after `source STATE_DIR/env`):
    $VENV/bin/python tests/s3/probe.py

Prints one line per check: `name: OK|UNEXPECTED|INFO  detail`. Exit code 0 always (it reports,
it does not judge); every request goes to $PROMOTE_TEST_S3_ENDPOINT (127.0.0.1 only).
"""

import base64
import hashlib
import os
import sys
import threading
import uuid
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["PROMOTE_TEST_S3_ENDPOINT"]
BUCKET = os.environ["PROMOTE_TEST_S3_BUCKET"]
SERVER = os.environ.get("PROMOTE_TEST_S3_SERVER", "?")
assert urlparse(ENDPOINT).hostname in ("127.0.0.1", "localhost", "::1"), ENDPOINT

s3 = boto3.client(
    "s3",
    endpoint_url=ENDPOINT,
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
    config=Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1},
        # don't let botocore add its own CRC32 checksum: we want to see exactly our headers
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=32,
    ),
)

SENT = {}


def _record(request, **_):
    SENT["last"] = {
        k.lower(): v for k, v in request.headers.items() if k.lower().startswith(("if-", "x-amz-checksum", "x-amz-meta", "x-amz-sdk-checksum"))
    }


s3.meta.events.register("before-send.s3.*", _record)

PREFIX = "probe-%s/" % uuid.uuid4().hex[:8]


def key(name):
    return PREFIX + name


def status(e):
    return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"), e.response.get("Error", {}).get("Code")


def report(name, ok, detail):
    print("%-42s %-10s %s" % (name + ":", "OK" if ok is True else ("INFO" if ok is None else "UNEXPECTED"), detail))
    sys.stdout.flush()


def b64sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


print("server=%s endpoint=%s bucket=%s prefix=%s" % (SERVER, ENDPOINT, BUCKET, PREFIX))

# 1. PutObject If-None-Match: *
k = key("create-only")
try:
    s3.put_object(Bucket=BUCKET, Key=k, Body=b"first", IfNoneMatch="*")
    report("put If-None-Match:* on new key", True, "200")
except ClientError as e:
    report("put If-None-Match:* on new key", False, "rejected %s" % (status(e),))
try:
    s3.put_object(Bucket=BUCKET, Key=k, Body=b"second", IfNoneMatch="*")
    body = s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
    report("put If-None-Match:* on existing key", False, "accepted (200); object now %r" % body)
except ClientError as e:
    st = status(e)
    body = s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
    report("put If-None-Match:* on existing key", st[0] == 412 and body == b"first", "%s %s; object still %r" % (st[0], st[1], body))

# 1b. PutObject If-Match: <etag>
etag = s3.head_object(Bucket=BUCKET, Key=k)["ETag"]
try:
    s3.put_object(Bucket=BUCKET, Key=k, Body=b"third", IfMatch='"00000000000000000000000000000000"')
    report("put If-Match:<wrong etag>", False, "accepted (200)")
except ClientError as e:
    report("put If-Match:<wrong etag>", status(e)[0] == 412, "%s %s" % status(e))
try:
    s3.put_object(Bucket=BUCKET, Key=k, Body=b"third", IfMatch=etag)
    report("put If-Match:<current etag>", True, "200")
except ClientError as e:
    report("put If-Match:<current etag>", False, "rejected %s %s" % status(e))
try:
    s3.put_object(Bucket=BUCKET, Key=key("if-match-missing"), Body=b"x", IfMatch=etag)
    report("put If-Match on missing key", False, "accepted (200)")
except ClientError as e:
    report("put If-Match on missing key", None, "%s %s (AWS: 404 NoSuchKey)" % status(e))

# 1c. Race: N concurrent create-only puts of one new key; exactly one may win.
N = 16
k = key("race")
results = []
barrier = threading.Barrier(N)


def racer(i):
    barrier.wait()
    try:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"racer-%d" % i, IfNoneMatch="*")
        results.append(("won", i))
    except ClientError as e:
        results.append((status(e), i))


threads = [threading.Thread(target=racer, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join()
won = [i for r, i in results if r == "won"]
final = s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
others = sorted({str(r) for r, _ in results if r != "won"})
report("race: %d concurrent If-None-Match:* puts" % N, len(won) == 1 and final == b"racer-%d" % won[0],
       "%d won %s, final=%r, losers=%s" % (len(won), won, final, others))

# 2. x-amz-checksum-sha256
data = b"payload for checksum"
k = key("checksum-wrong")
try:
    s3.put_object(Bucket=BUCKET, Key=k, Body=data, ChecksumSHA256=b64sha256(b"something else"))
    exists = True
    report("put wrong x-amz-checksum-sha256", False, "accepted (200); sent %s" % SENT.get("last"))
except ClientError as e:
    report("put wrong x-amz-checksum-sha256", status(e)[0] == 400, "%s %s" % status(e))
try:
    s3.head_object(Bucket=BUCKET, Key=k)
    report("  ...object stored anyway?", False, "yes")
except ClientError as e:
    report("  ...object stored anyway?", True, "no (%s)" % (status(e)[0],))
k = key("checksum-right")
try:
    r = s3.put_object(Bucket=BUCKET, Key=k, Body=data, ChecksumSHA256=b64sha256(data))
    report("put right x-amz-checksum-sha256", True, "200, response ChecksumSHA256=%s" % r.get("ChecksumSHA256"))
    h = s3.head_object(Bucket=BUCKET, Key=k, ChecksumMode="ENABLED")
    report("  head ChecksumMode=ENABLED", h.get("ChecksumSHA256") == b64sha256(data), "ChecksumSHA256=%s" % h.get("ChecksumSHA256"))
except ClientError as e:
    report("put right x-amz-checksum-sha256", False, "rejected %s %s" % status(e))
try:
    s3.put_object(Bucket=BUCKET, Key=key("checksum-garbage"), Body=data, ChecksumSHA256="not-base64!!")
    report("put malformed x-amz-checksum-sha256", False, "accepted (200)")
except ClientError as e:
    report("put malformed x-amz-checksum-sha256", status(e)[0] == 400, "%s %s" % status(e))

# 3. user metadata round trip
k = key("meta")
s3.put_object(Bucket=BUCKET, Key=k, Body=b"m", Metadata={"promote-sha256": "abc123", "promote-src": "x"})
h = s3.head_object(Bucket=BUCKET, Key=k)
report("metadata via head", h.get("Metadata") == {"promote-sha256": "abc123", "promote-src": "x"}, "%s" % h.get("Metadata"))

# 4. multipart
PART = b"a" * (5 * 1024 * 1024)  # 5 MiB minimum for non-last parts
TAIL = b"tail"


def mpu(k, complete_kwargs=None, part_checksum=False, metadata=None):
    kw = {"Bucket": BUCKET, "Key": k}
    if part_checksum:
        kw["ChecksumAlgorithm"] = "SHA256"
    if metadata:
        kw["Metadata"] = metadata
    up = s3.create_multipart_upload(**kw)["UploadId"]
    parts = []
    for n, body in ((1, PART), (2, TAIL)):
        pk = {"Bucket": BUCKET, "Key": k, "UploadId": up, "PartNumber": n, "Body": body}
        if part_checksum:
            pk["ChecksumSHA256"] = b64sha256(body)
        r = s3.upload_part(**pk)
        p = {"PartNumber": n, "ETag": r["ETag"]}
        if part_checksum:
            p["ChecksumSHA256"] = r.get("ChecksumSHA256") or b64sha256(body)
        parts.append(p)
    s3.complete_multipart_upload(Bucket=BUCKET, Key=k, UploadId=up, MultipartUpload={"Parts": parts}, **(complete_kwargs or {}))
    return up


k = key("mpu-create-only")
try:
    mpu(k, {"IfNoneMatch": "*"})
    report("MPU complete If-None-Match:* new key", True, "200")
except ClientError as e:
    report("MPU complete If-None-Match:* new key", False, "rejected %s %s" % status(e))
before = s3.head_object(Bucket=BUCKET, Key=k)["ETag"]
try:
    up = mpu(k, {"IfNoneMatch": "*"})
    after = s3.head_object(Bucket=BUCKET, Key=k)["ETag"]
    report("MPU complete If-None-Match:* existing key", False, "accepted (200); etag %s -> %s" % (before, after))
except ClientError as e:
    after = s3.head_object(Bucket=BUCKET, Key=k)["ETag"]
    report("MPU complete If-None-Match:* existing key", status(e)[0] == 412 and before == after,
           "%s %s; etag unchanged=%s" % (status(e) + (before == after,)))
ups = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads", [])
report("  ...upload left open after 412?", None, "%d open upload(s) under prefix" % len(ups))
for u in ups:
    s3.abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])
ups = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads", [])
report("ListMultipartUploads+Abort", len(ups) == 0, "%d left after abort" % len(ups))

# plain overwrite via MPU without condition (sanity: must succeed)
try:
    mpu(k)
    report("MPU complete unconditional overwrite", True, "200")
except ClientError as e:
    report("MPU complete unconditional overwrite", False, "%s %s" % status(e))

# MPU with SHA256 part checksums + metadata
k = key("mpu-checksum")
try:
    mpu(k, part_checksum=True, metadata={"promote-sha256": "feed"})
    h = s3.head_object(Bucket=BUCKET, Key=k, ChecksumMode="ENABLED")
    report("MPU SHA256 part checksums + metadata", h.get("Metadata") == {"promote-sha256": "feed"},
           "meta=%s ChecksumSHA256=%s ChecksumType=%s" % (h.get("Metadata"), h.get("ChecksumSHA256"), h.get("ChecksumType")))
except ClientError as e:
    report("MPU SHA256 part checksums + metadata", False, "%s %s" % status(e))

# wrong part checksum
k = key("mpu-bad-part")
up = s3.create_multipart_upload(Bucket=BUCKET, Key=k, ChecksumAlgorithm="SHA256")["UploadId"]
try:
    s3.upload_part(Bucket=BUCKET, Key=k, UploadId=up, PartNumber=1, Body=TAIL, ChecksumSHA256=b64sha256(b"nope"))
    report("UploadPart wrong x-amz-checksum-sha256", False, "accepted (200)")
except ClientError as e:
    report("UploadPart wrong x-amz-checksum-sha256", status(e)[0] == 400, "%s %s" % status(e))
s3.abort_multipart_upload(Bucket=BUCKET, Key=k, UploadId=up)

# CopyObject If-None-Match (AWS added conditional copy? report only)
try:
    s3.copy_object(Bucket=BUCKET, Key=key("create-only"), CopySource={"Bucket": BUCKET, "Key": key("meta")},
                   IfNoneMatch="*")
    report("copy If-None-Match:* onto existing key", None, "accepted (200) - overwrote")
except ClientError as e:
    report("copy If-None-Match:* onto existing key", None, "%s %s" % status(e))
except Exception as e:  # older botocore may not model the parameter
    report("copy If-None-Match:* onto existing key", None, "client: %s" % e)

# What the server verifies at all (tests cannot catch signing/payload-hash bugs where it doesn't)
bad_secret = boto3.client(
    "s3", endpoint_url=ENDPOINT, aws_access_key_id="test", aws_secret_access_key="WRONG-SECRET",
    region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
try:
    bad_secret.put_object(Bucket=BUCKET, Key=key("sig"), Body=b"x")
    report("SigV4 signature verified?", None, "no: wrong secret accepted")
except ClientError as e:
    report("SigV4 signature verified?", None, "yes: wrong secret rejected %s %s" % status(e))


def _bad_content_sha(request, **_):
    if request.method == "PUT":
        request.headers["x-amz-content-sha256"] = hashlib.sha256(b"other").hexdigest()


s3.meta.events.register("before-send.s3.PutObject", _bad_content_sha)
try:
    s3.put_object(Bucket=BUCKET, Key=key("content-sha"), Body=b"payload")
    report("x-amz-content-sha256 verified?", None, "no: wrong payload hash accepted")
except ClientError as e:
    report("x-amz-content-sha256 verified?", None, "yes: rejected %s %s" % status(e))
s3.meta.events.unregister("before-send.s3.PutObject", _bad_content_sha)


# If-None-Match added AFTER signing (unsigned), as object_store's client.rs does for its
# internal CompleteMultipartMode::Create and as a wrapping HttpService would.
def _inm_after_sign(request, **_):
    if request.method == "POST" and "uploadId=" in request.url:
        request.headers["If-None-Match"] = "*"


s3.meta.events.register("before-send.s3.CompleteMultipartUpload", _inm_after_sign)
k = key("mpu-unsigned-inm")
try:
    mpu(k)
    report("MPU complete unsigned If-None-Match new", True, "200")
except ClientError as e:
    report("MPU complete unsigned If-None-Match new", False, "%s %s" % status(e))
try:
    mpu(k)
    report("MPU complete unsigned If-None-Match exist", False, "accepted (200)")
except ClientError as e:
    report("MPU complete unsigned If-None-Match exist", status(e)[0] == 412, "%s %s" % status(e))
s3.meta.events.unregister("before-send.s3.CompleteMultipartUpload", _inm_after_sign)
for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads", []):
    s3.abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])

# cleanup
objs = s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])
for o in objs:
    s3.delete_object(Bucket=BUCKET, Key=o["Key"])
print("cleaned %d objects" % len(objs))
