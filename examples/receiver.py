#!/usr/bin/env python3
"""A minimal webhook receiver for trying mxhook: verifies each request with the stock Standard Webhooks
library and prints the event. Usage: python3 examples/receiver.py PORT whsec_SECRET   (pip install standardwebhooks)"""
import http.server
import json
import sys

from standardwebhooks.webhooks import Webhook

port, secret = int(sys.argv[1]), sys.argv[2]
webhook = Webhook(secret)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = webhook.verify(body, dict(self.headers))  # raw bytes, before any JSON parsing
        except Exception as e:  # forged, altered or stale
            print(f"rejected: {e}", flush=True)
            self.send_response(400)
            self.end_headers()
            return
        m = event["message"]
        sender = (m.get("from") or {}).get("address")
        print(f"{event['id']} attempt {event['delivery']['attempt']}: {sender} -> {m['smtp']['rcpt_to']}: "
              f"{m.get('subject')!r} ({m['parsed']['status']})", flush=True)
        print(json.dumps(event, indent=2)[:2000], flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


print(f"listening on 127.0.0.1:{port}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
