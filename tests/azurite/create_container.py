"""Create a blob container on Azurite with a SharedKey-signed request (standard library only).

usage: create_container.py ENDPOINT ACCOUNT KEY CONTAINER   (ENDPOINT ends with /ACCOUNT)
Retries for a few seconds while the server comes up; an existing container is fine.
"""
import base64
import hashlib
import hmac
import sys
import time
import urllib.error
import urllib.request
from email.utils import formatdate

endpoint, account, key, container = sys.argv[1:5]
version = "2021-08-06"


def create():
    date = formatdate(usegmt=True)
    headers = {"x-ms-date": date, "x-ms-version": version, "Content-Length": "0"}
    canonical_headers = "x-ms-date:%s\nx-ms-version:%s\n" % (date, version)
    canonical_resource = "/%s/%s/%s\nrestype:container" % (account, account, container)
    # Verb, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
    # If-Match, If-None-Match, If-Unmodified-Since, Range.
    to_sign = "PUT\n\n\n\n\n\n\n\n\n\n\n\n" + canonical_headers + canonical_resource
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    headers["Authorization"] = "SharedKey %s:%s" % (account, signature)
    url = "%s/%s?restype=container" % (endpoint.rstrip("/"), container)
    # No body: urllib would add a Content-Type to an empty one, which would then be unsigned.
    req = urllib.request.Request(url, method="PUT", headers=headers)
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        if e.code != 409:  # ContainerAlreadyExists
            raise


deadline = time.monotonic() + 20
while True:
    try:
        create()
        break
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, ConnectionError):
        if time.monotonic() > deadline:
            raise
        time.sleep(0.25)
print("container %s ready at %s" % (container, endpoint))
