"""Reads a stream by long-polling with httpx; with a consumer, each iterator passed acks a page."""
import json

import httpx

import common

a = common.args(lambda p: (p.add_argument("--iterator"), p.add_argument("--limit", type=int, default=10)))
out = common.Out(a)
client = httpx.Client(headers={"Authorization": f"Bearer {a.token}"}, timeout=a.timeout)
iterator, done = a.iterator, False
while not done:
    out.check_time()
    params = {"wait": 5, "limit": a.limit}
    if iterator:
        params["iterator"] = iterator
    if a.consumer:
        params["consumer"] = a.consumer
    page = client.get(f"{a.url}/poll", params=params)
    page.raise_for_status()
    page = page.json()
    for event in page["data"]:
        done = out.event(event["stream"]["cursor"], event)
        if done:
            break
    if not done or event is page["data"][-1]:
        iterator = page["iterator"]
# The iterator to resume with, on stderr-free stdout as a last line of its own.
print(json.dumps({"iterator": iterator}), flush=True)
if a.consumer:
    client.get(f"{a.url}/poll", params={"iterator": iterator, "consumer": a.consumer, "limit": 1}).raise_for_status()
