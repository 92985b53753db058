#!/usr/bin/env python3
"""Bytes the SQLite store keeps per message, and where: COUNT messages of SIZE bytes over 20 reused
sessions into a fresh mxhook whose endpoint answers 503 (every message keeps a pending delivery and
one failed attempt, the issue-21 case), then dbstat by table/index, the files under data_dir, and the
WAL's largest size seen while the load ran (sampled every 50 ms).

usage: bench/storage.py [--count 20000] [--size 2048] [--body filler|text] [--bin PATH]...
  filler: smtp-source's own body (one repeated line: compresses far better than mail does)
  text:   a multipart/alternative mail (text + html) of words drawn from a 2,000-word vocabulary
          with a Zipf law, a DKIM-Signature and two Received headers: closer to real mail
Run under the bench lock (fixed ports).
"""
import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the gateway's config, ports and process helpers)

WORDS = None


def vocabulary(rng):
    global WORDS
    if WORDS is None:
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
        WORDS = ["".join(rng.choices(letters, weights, k=rng.choice([2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9]))) for _ in range(2000)]
    return WORDS


def prose(rng, n):
    words = vocabulary(rng)
    out, line = [], []
    total = 0
    while total < n:
        w = words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)]
        if not line:
            w = w.capitalize()
        line.append(w)
        if sum(len(x) + 1 for x in line) > 72:
            s = " ".join(line) + ("." if rng.random() < 0.3 else "")
            out.append(s)
            total += len(s) + 2
            line = []
    return out


def text_mail(rng, i, size):
    b64 = lambda k: "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", k=k))
    head = [
        f"Received: from mail{rng.randint(1, 99)}.src.test (mail.src.test [192.0.2.{rng.randint(1, 250)}])\r\n\tby relay.src.test with ESMTPS id {b64(12)}\r\n\tfor <x@bench.test>; Mon, 3 Nov 2025 10:{i % 60:02d}:00 +0000",
        f"Received: by 2002:a05:{rng.randint(1000, 9999)}:{b64(4)} with SMTP id {b64(10)};\r\n\tMon, 3 Nov 2025 10:{i % 60:02d}:00 -0800",
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=src.test; s=s1;\r\n\th=from:to:subject:date:message-id; bh={b64(43)}=;\r\n\tb={b64(76)}\r\n\t{b64(76)}\r\n\t{b64(60)}==",
        f"Message-ID: <{b64(20)}@src.test>",
        f"Date: Mon, 3 Nov 2025 10:{i % 60:02d}:00 +0000",
        "From: Sender Name <sender@src.test>",
        "To: x@bench.test",
        f"Subject: {' '.join(prose(rng, 30)[0].split()[:6])}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/alternative; boundary="b1"',
    ]
    msg = "\r\n".join(head) + "\r\n\r\n"
    room = max(200, size - len(msg) - 200)
    lines = prose(rng, room * 45 // 100)
    text = "\r\n".join(lines)
    html = "<html><body>" + "".join(f"<p>{l}</p>\r\n" for l in lines) + "</body></html>"
    msg += f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1--\r\n"
    return msg.encode()


def send_all(port, count, size, sessions):
    rng = random.Random(21)
    mails = [text_mail(rng, i, size) for i in range(count)]
    errors = []

    def session(k):
        try:
            s = socket.create_connection(("127.0.0.1", port))
            f = s.makefile("rb")

            def reply():
                while True:
                    line = f.readline()
                    if not line:
                        raise RuntimeError("closed")
                    if line[3:4] != b"-":
                        return line

            reply()
            s.sendall(b"EHLO load.test\r\n")
            reply()
            for i in range(k, count, sessions):
                body = mails[i].replace(b"\r\n.", b"\r\n..")
                s.sendall(b"MAIL FROM:<sender@src.test>\r\nRCPT TO:<x@bench.test>\r\nDATA\r\n")
                for _ in range(3):
                    r = reply()
                s.sendall(body + b".\r\n")
                r = reply()
                if not r.startswith(b"250"):
                    raise RuntimeError(r)
            s.sendall(b"QUIT\r\n")
            s.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    if errors:
        raise RuntimeError(errors[0])
    return sum(len(m) for m in mails) / count


def du(path):
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            key = os.path.relpath(p, path).split("/")[0]
            if key.startswith("mxhook.db"):
                key = os.path.basename(p)
            a = out.setdefault(key, [0, 0, 0])
            a[0] += 1
            a[1] += st.st_size
            a[2] += st.st_blocks * 512
    return out


def measure(binary, args):
    work = os.environ.get("STORAGE_WORK", "/tmp/storage")
    os.makedirs(work, exist_ok=True)
    recv = run.Proc([run.MXBENCH, "receive", "--port", str(run.PORT_FAST), "--status", "503"], os.path.join(work, "recv.log"))
    dns = run.Proc([sys.executable, run.DNS, str(run.PORT_DNS)], os.path.join(work, "dns.log"))
    run.wait_port(run.PORT_FAST)
    mx = run.Mxhook(work, binary=binary)
    data = os.path.join(mx.dir, "data")
    wal = os.path.join(data, "mxhook.db-wal")
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], os.path.getsize(wal))
            except OSError:
                pass
            time.sleep(0.05)

    th = threading.Thread(target=sample)
    th.start()
    try:
        t0 = time.time()
        if args.body == "filler":
            run.smtp_source(run.PORT_MXHOOK, args.size, 20, args.count, True, "x@bench.test")
            raw_avg = None
        else:
            raw_avg = send_all(run.PORT_MXHOOK, args.count, args.size, 20)
        t1 = time.time()
        # Every first attempt recorded (the receiver counts requests).
        deadline = time.time() + 300
        while run.stats(run.PORT_FAST)["count"] < args.count and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        stop.set()
        th.join()
        wal_end = os.path.getsize(wal) if os.path.exists(wal) else 0
        mx.proc.stop()  # a clean stop checkpoints the WAL
        db = sqlite3.connect(os.path.join(data, "mxhook.db"))
        tables = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall())
        n, size_sum = db.execute("SELECT COUNT(*), SUM(size) FROM messages").fetchone()
        attempts = db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        db.close()
        files = du(data)
        if args.keep:
            shutil.copy(os.path.join(data, "mxhook.db"), args.keep)
        total = sum(v[2] for v in files.values())
        res = {
            "binary": binary, "count": n, "raw_avg": size_sum / n, "rate": args.count / (t1 - t0), "attempts": attempts,
            "wal_peak": peak[0], "wal_end": wal_end, "tables": tables, "files": files,
            "du_per_msg": total / n, "ratio": total / size_sum,
        }
    finally:
        stop.set()
        mx.stop()
        recv.stop()
        dns.stop()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--body", default="filler", choices=["filler", "text"])
    ap.add_argument("--bin", action="append")
    ap.add_argument("--out")
    ap.add_argument("--keep", help="copy the database here (the last --bin's)")
    args = ap.parse_args()
    results = []
    for b in args.bin or [run.MXHOOK]:
        r = measure(b, args)
        results.append(r)
        print(f"{b}: {r['count']} msgs, raw {r['raw_avg']:.0f} B, {r['rate']:.0f}/s, attempts {r['attempts']}, "
              f"on disk {r['du_per_msg']:.0f} B/msg = {r['ratio']:.2f} x raw, WAL peak {r['wal_peak'] / 1e6:.1f} MB, "
              f"at end {r['wal_end'] / 1e6:.1f} MB", flush=True)
        for k, v in r["files"].items():
            print(f"   file {k:16} n={v[0]:7} size {v[1] / r['count']:8.0f} B/msg  allocated {v[2] / r['count']:8.0f} B/msg")
        for k, v in r["tables"].items():
            print(f"   dbstat {k:34} {v / r['count']:8.0f} B/msg")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
