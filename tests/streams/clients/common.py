"""What the three stream clients share: arguments, when to stop, and one JSON line per event."""
import argparse
import json
import sys
import time


def args(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="the stream, .../v1/streams/NAME")
    p.add_argument("--token", required=True)
    p.add_argument("--count", type=int, help="stop after this many events")
    p.add_argument("--until-subject", help="stop after the event of the message with this subject")
    p.add_argument("--consumer")
    p.add_argument("--timeout", type=float, default=30.0)
    if extra:
        extra(p)
    return p.parse_args()


class Out:
    """Prints `{"cursor": N, "event": {...}}` per event; says when the client is done."""

    def __init__(self, a):
        self.a, self.n = a, 0
        self.deadline = time.monotonic() + a.timeout

    def event(self, cursor, event):
        print(json.dumps({"cursor": cursor, "event": event}), flush=True)
        self.n += 1
        subject = (event.get("message") or {}).get("subject")
        return (self.a.count is not None and self.n >= self.a.count) or (
            self.a.until_subject is not None and subject == self.a.until_subject)

    def check_time(self):
        if time.monotonic() > self.deadline:
            sys.exit(f"timed out after {self.n} event(s)")
