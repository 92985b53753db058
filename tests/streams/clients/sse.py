"""Reads a stream as Server-Sent Events with httpx, resuming with Last-Event-ID."""
import json

import httpx

import common

a = common.args(lambda p: p.add_argument("--last-event-id"))
out = common.Out(a)
headers = {"Authorization": f"Bearer {a.token}", "Accept": "text/event-stream"}
if a.last_event_id:
    headers["Last-Event-ID"] = a.last_event_id
params = {"consumer": a.consumer} if a.consumer else {}
with httpx.stream("GET", f"{a.url}/events", headers=headers, params=params,
                  timeout=httpx.Timeout(a.timeout)) as r:
    r.raise_for_status()
    event_id, data = None, []
    for line in r.iter_lines():
        out.check_time()
        if line.startswith(":"):
            continue  # a heartbeat
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            if out.event(int(event_id), json.loads("\n".join(data))):
                break
            data = []
if a.consumer:
    # SSE has no way back on the same connection: ack with a POST.
    last = out.n and int(event_id)
    httpx.post(f"{a.url}/ack", headers={"Authorization": f"Bearer {a.token}"},
               json={"consumer": a.consumer, "cursor": last}).raise_for_status()
