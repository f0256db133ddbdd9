#!/usr/bin/env python3
"""A proxy in front of a real S3 server (or Azurite, for --lose-completion-of), in one of several
modes. Listens on 127.0.0.1 only.

    python3 ignore_conditions.py UPSTREAM_URL PORT_FILE              # drop conditions
    python3 ignore_conditions.py UPSTREAM_URL PORT_FILE --read-only  # refuse writes
    python3 ignore_conditions.py UPSTREAM_URL PORT_FILE --fail STATUS CODE  # fail everything
    python3 ignore_conditions.py UPSTREAM_URL PORT_FILE --refuse-writes-to TEXT
    python3 ignore_conditions.py UPSTREAM_URL PORT_FILE --lose-completion-of TEXT

Default: drops If-None-Match / If-Match from every request, so the server behind it ignores
conditional writes (for testing that promote refuses to trust it).

--read-only: answers every PUT, POST and DELETE with 403 AccessDenied, as S3 does for
credentials that may only read, and appends "METHOD PATH" of each refused request to
PORT_FILE.refused (for testing that reads never write).

--fail STATUS CODE: answers every request with STATUS and an S3 error body with CODE, logging
each to PORT_FILE.refused too (for counting how often a fault is retried).

--refuse-writes-to TEXT: like --read-only, for writes whose path contains TEXT only.

--lose-completion-of TEXT: passes every request on, but the answer to the first commit of a
multi-part upload whose path contains TEXT (S3's CompleteMultipartUpload, a POST with an
uploadId; Azure's Put Block List, a PUT with comp=blocklist) never reaches the client: the proxy closes the connection instead, once the server has answered, and logs
"LOST METHOD PATH STATUS" to PORT_FILE.refused (for testing a completion whose answer is lost).

Every mode appends "METHOD PATH" of each request it receives to PORT_FILE.requests.
Writes the port it listens on to PORT_FILE once ready; exits when stdin closes.
"""
import http.client
import http.server
import sys
import threading
import urllib.parse

UPSTREAM = urllib.parse.urlsplit(sys.argv[1])
READ_ONLY = sys.argv[3:] == ["--read-only"]
REFUSED_PATH = sys.argv[4] if sys.argv[3:4] == ["--refuse-writes-to"] else None
FAIL = (int(sys.argv[4]), sys.argv[5]) if sys.argv[3:4] == ["--fail"] else None
LOSE_MODE = sys.argv[3:4] == ["--lose-completion-of"]
LOSE_COMPLETION = [sys.argv[4] if LOSE_MODE else None]
REFUSED_LOG = sys.argv[2] + ".refused"
REQUEST_LOG = sys.argv[2] + ".requests"
LOG_LOCK = threading.Lock()
DROPPED = {"if-none-match", "if-match"}
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def refuse(self, status=403, code="AccessDenied"):
        with LOG_LOCK, open(REFUSED_LOG, "a") as log:
            log.write("%s %s\n" % (self.command, self.path))
        data = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                "<Message>refused by the test proxy</Message></Error>" % code).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with LOG_LOCK, open(REQUEST_LOG, "a") as log:
            log.write("%s %s\n" % (self.command, self.path))
        if (READ_ONLY or (REFUSED_PATH and REFUSED_PATH in self.path)) and self.command in ("PUT", "POST", "DELETE"):
            return self.refuse()
        if FAIL:
            return self.refuse(*FAIL)
        dropped = set() if READ_ONLY or REFUSED_PATH or FAIL or LOSE_MODE else DROPPED
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped | HOP}
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        with LOG_LOCK:
            commit = (self.command == "POST" and "uploadId=" in self.path) or \
                (self.command == "PUT" and "comp=blocklist" in self.path)
            lose = LOSE_COMPLETION[0] and commit and LOSE_COMPLETION[0] in self.path
            if lose:
                LOSE_COMPLETION[0] = None
                with open(REFUSED_LOG, "a") as log:
                    log.write("LOST %s %s %d\n" % (self.command, self.path, resp.status))
        if lose:
            self.close_connection = True
            return
        self.send_response(resp.status, resp.reason)
        # A HEAD answer has no body but the object's Content-Length: pass that through.
        keep_length = self.command == "HEAD"
        for k, v in resp.getheaders():
            if k.lower() not in HOP and (keep_length or k.lower() != "content-length"):
                self.send_header(k, v)
        if not keep_length:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
sys.stdin.read()
server.shutdown()
