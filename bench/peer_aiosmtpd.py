#!/usr/bin/env python3
"""The peer: what a user would otherwise deploy for mail-to-webhook. Python's aiosmtpd with a handler
that parses the message (email package), builds a JSON event (envelope, From/To/Subject, text body,
raw base64 up to 256 KiB like mxhook) and POSTs it to the webhook with aiohttp (keep-alive session).
It answers 250 only after the endpoint answered 2xx, else 451: nothing is written to disk, so a crash
after the 250 loses nothing only because the POST already happened.

usage: peer_aiosmtpd.py SMTP_PORT WEBHOOK_URL
"""
import asyncio
import base64
import email
import email.policy
import json
import sys
import time

import aiohttp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

INLINE_RAW_MAX = 256 * 1024


class Handler:
    def __init__(self, url):
        self.url = url
        self.session = None

    async def handle_DATA(self, server, session, envelope):
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain", "html"))
        event = {
            "type": "email.received",
            "created_at": time.time(),
            "smtp": {
                "mail_from": envelope.mail_from,
                "rcpt_to": envelope.rcpt_tos,
                "client_ip": session.peer[0],
                "helo": session.host_name,
            },
            "subject": str(msg.get("subject", "")),
            "from": str(msg.get("from", "")),
            "to": str(msg.get("to", "")),
            "message_id": str(msg.get("message-id", "")),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "text": body.get_content() if body is not None else None,
            "raw": {"size": len(raw), "base64": base64.b64encode(raw).decode() if len(raw) <= INLINE_RAW_MAX else None},
        }
        data = json.dumps(event).encode()
        try:
            async with self.session.post(self.url, data=data, headers={"content-type": "application/json"}) as r:
                await r.read()
                if 200 <= r.status < 300:
                    return "250 2.0.0 Ok: delivered"
        except Exception as e:  # noqa: BLE001 - any failure is a temporary one for the sender
            print("post failed:", e, file=sys.stderr)
        return "451 4.3.0 Error: webhook failed, try again later"


def main():
    port, url = int(sys.argv[1]), sys.argv[2]
    handler = Handler(url)
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        data_size_limit=60 * 1024 * 1024,
        decode_data=False,
        server_kwargs={"timeout": 300},
    )
    controller.start()
    print(f"peer: aiosmtpd on 127.0.0.1:{port} -> {url}", file=sys.stderr, flush=True)
    try:
        asyncio.get_event_loop_policy()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
