#!/usr/bin/env python3
"""Is the event the same? Sends every message of a corpus through two mxhook builds, one at a time,
and compares the webhook bodies byte for byte after replacing what differs by nature from run to
run (ids, timestamps, link signatures). For refactors that must not change behaviour.

    python3 bench/same_events.py OLD_BINARY NEW_BINARY [CORPUS_DIR]   # default: tests/corpus

Exits 0 when every body is identical, 1 otherwise (and prints the first difference of each)."""
import os
import re
import smtplib
import subprocess
import sys
import tempfile

from gateway import Receiver, free_port, wait_port, write_config

VARYING = [
    (re.compile(rb"\b(msg|evt|dlv)_[0-9A-Za-z]{10,}"), rb"\1_ID"),
    (re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), rb"TIME"),
    (re.compile(rb"exp=\d+&sig=[A-Za-z0-9_\-=%]+"), rb"exp=EXP&sig=SIG"),
]


def run(binary, files):
    rx = Receiver()
    smtp, web = free_port(), free_port()
    with tempfile.TemporaryDirectory() as d:
        config = write_config(d, smtp, web, rx)
        gw = subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(smtp, 30)
            for i, path in enumerate(files):
                raw = open(path, "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                with smtplib.SMTP("127.0.0.1", smtp) as c:
                    c.sendmail("corpus@sender.test", ["inbox@example.test"], raw)
                if not rx.wait(i + 1, 30):  # one at a time: the n-th body is the n-th file's
                    raise SystemExit(f"{binary}: no event for {path}")
        finally:
            gw.terminate()
            gw.wait()
            rx.close()
    return rx.bodies


def normal(body):
    for pattern, replacement in VARYING:
        body = pattern.sub(replacement, body)
    return body


def main():
    old, new = sys.argv[1], sys.argv[2]
    corpus = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(__file__), "..", "tests", "corpus")
    files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus) if f.endswith(".eml"))
    a, b = run(old, files), run(new, files)
    differ = 0
    for path, x, y in zip(files, a, b):
        x, y = normal(x), normal(y)
        if x != y:
            differ += 1
            at = next(i for i in range(min(len(x), len(y)) + 1) if x[i:i + 1] != y[i:i + 1])
            print(f"{os.path.basename(path)}: differs at byte {at}: {x[at - 40:at + 40]!r} vs {y[at - 40:at + 40]!r}")
    total = sum(len(x) for x in a)
    print(f"{len(files)} messages, {total} bytes of events: {len(files) - differ} identical, {differ} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
