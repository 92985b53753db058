#!/usr/bin/env python3
"""Instructions per message: the gateway under `valgrind --tool=callgrind` takes a fixed batch of
messages end to end (SMTP in, fsync'd 250, webhook out, verified arrival), and the instruction count
is divided by the batch. Machine noise does not move it; compare builds with it.

    python3 bench/instructions.py BINARY [BINARY ...] [--messages 300] [--size 5120] [--sessions 4]

Prints, for each binary, instructions per message in all and by stage (inclusive counts of the
stage's entry points, from callgrind_annotate). Needs valgrind. SHA-256 is counted as software: under
valgrind the CPU's SHA extensions are hidden (see STAGES)."""
import argparse
import os
import re
import signal
import smtplib
import subprocess
import tempfile
import threading

from gateway import Receiver, free_port, wait_port, write_config

STAGES = [  # (label, symbol pattern of the stage's entry point, inclusive)
    ("smtp session (incl. ingest)", r"mxhook::smtp::session::Session<S>::command::\{\{closure\}\}"),
    ("ingest (auth+parse+route+store)", r"mxhook::ingest::.*accept"),
    ("parse", r"mxhook::parse::parse_bounded"),
    ("extract (reply, forward, preview)", r"mxhook::extract::extract"),
    ("store ingest", r"mxhook::store::.*ingest"),
    ("event json", r"EventMessage>?::to_json( \[|$)"),
    ("deliver attempt", r"mxhook::deliver::Deliverer::attempt \["),
    ("  of which the webhook's HMAC", r"mxhook::mail::signing_key::SigningKeys::sign \["),
    # Every SHA-256 block (raw.sha256, the HMAC, link signatures): valgrind hides SHA-NI, so ring runs
    # its AVX code here, about 30 instructions a byte; outside valgrind a CPU with SHA-NI needs a
    # small fraction of that. Shown so a change can be judged with and without it.
    ("sha-256 blocks (all, software here)", r"ring::digest::dynstate::sha256_block_data_order \["),
]


def message(i, size):
    head = f"From: Ada <ada@sender.test>\r\nTo: inbox@example.test\r\nSubject: mxb-{i}\r\nMessage-ID: <{i}@sender.test>\r\n\r\n"
    line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    return (head + line * (size // len(line) + 1))[:size].encode()


def measure(binary, n, size, sessions):
    rx = Receiver()
    smtp, web = free_port(), free_port()
    with tempfile.TemporaryDirectory() as d:
        config = write_config(d, smtp, web, rx)
        out = os.environ.get("CALLGRIND_OUT") or os.path.join(d, "callgrind.out")
        gw = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve", "--config", config],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(smtp, 120)

        def send(k):
            with smtplib.SMTP("127.0.0.1", smtp, timeout=120) as c:
                for i in range(k, n, sessions):
                    c.sendmail("ada@sender.test", ["inbox@example.test"], message(i, size))

        threads = [threading.Thread(target=send, args=(k,)) for k in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not rx.wait(n, 300):
            raise SystemExit(f"only {len(rx.bodies)} of {n} webhooks arrived")
        gw.send_signal(signal.SIGTERM)
        gw.wait()
        rx.close()
        total = None
        for line in open(out):
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
        annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
                                  capture_output=True, text=True).stdout
        stages = {}
        for label, pattern in STAGES:
            best = 0
            for line in annotate.splitlines():
                m = re.match(r"\s*([\d,]+) ", line)
                if m and re.search(pattern, line):
                    best = max(best, int(m.group(1).replace(",", "")))
            stages[label] = best
        return total, stages


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binaries", nargs="+")
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--size", type=int, default=5120)
    p.add_argument("--sessions", type=int, default=4)
    a = p.parse_args()
    for b in a.binaries:
        total, stages = measure(b, a.messages, a.size, a.sessions)
        print(f"{b}: {total / a.messages:,.0f} instructions per message ({a.messages} x {a.size} B, {a.sessions} sessions; start-up included)")
        for label, n in stages.items():
            print(f"    {label:34} {n / a.messages:>12,.0f}")


if __name__ == "__main__":
    main()
