#!/usr/bin/env python3
"""A stand-in push receiver for the walk-through: what a phone would be told, printed.

The gateway posts each push for a "webhook" device here as JSON (ClientId, UserID, Token,
Alert, and the topics with their counts); a real deployment points Webhook.URL at its own
relay, or configures APNs and FCM instead (docs/push.md).

    python3 receiver.py [PORT]      (default 8080, on 127.0.0.1; Ctrl-C stops it)
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

BODY_BYTES_MAX = 64 * 1024


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > BODY_BYTES_MAX:
            self.send_response(413)
            self.end_headers()
            return
        push = json.loads(self.rfile.read(length) or b"{}")
        print(f"push for {push.get('ClientId')} (user {push.get('UserID')}, token "
              f"{push.get('Token')}): {push.get('Alert')}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass  # one line per push is enough


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = HTTPServer(("127.0.0.1", port), Receiver)
    print(f"stand-in push receiver on http://127.0.0.1:{port}/push", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
