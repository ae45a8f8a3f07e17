#!/usr/bin/env python3
"""The customer's side of privnum's pushes, for the SIP test (.ci/sip): answers every POST with
200 and appends {"path", "body"} as one JSON line to the file named by its first argument.

    python3 receiver.py PUSHES.jsonl [PORT]      # listens on 127.0.0.1:PORT (default 9000)

With "-" as the file it keeps nothing (the measurement, examples/kamailio/measure.sh).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 9000


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if OUT != "-":
            with open(OUT, "a", encoding="utf-8") as out:
                out.write(json.dumps({"path": self.path, "body": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
