"""Reads a stream over a WebSocket with `websockets`, acking each event for a named consumer."""
import json

from websockets.sync.client import connect

import common

a = common.args(lambda p: p.add_argument("--after", type=int))
out = common.Out(a)
url = a.url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
with connect(url, additional_headers={"Authorization": f"Bearer {a.token}"}, open_timeout=a.timeout) as ws:
    subscribe = {"type": "subscribe"}
    if a.after is not None:
        subscribe["after"] = a.after
    if a.consumer:
        subscribe["consumer"] = a.consumer
    ws.send(json.dumps(subscribe))
    last, done = None, False
    while True:
        out.check_time()
        frame = json.loads(ws.recv(timeout=a.timeout))
        if frame["type"] == "error":
            raise SystemExit(f"error frame: {frame['message']}")
        if frame["type"] == "event" and not done:
            last = frame["cursor"]
            done = out.event(last, frame["event"])
            if a.consumer:
                ws.send(json.dumps({"type": "ack", "cursor": last}))
            elif done:
                break
        # With a consumer, leave once the server has recorded the last ack.
        if frame["type"] == "acked" and done and frame["cursor"] == last:
            break
