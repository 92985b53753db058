#!/usr/bin/env python3
"""A million messages into one store (issue 21, "flat cost"): does the cost per message stay flat as
the store grows, and does everything an operator does with a full store still answer at once?

One gateway (release build, fsync'd 250, [auth] off, a fresh data_dir) takes --count messages of
--size bytes over 20 reused sessions (smtp-source -d) in --batches batches, to an endpoint that is
down (nothing listens: every first attempt fails). Half the batches go to `later` (retry ["0s", "1h"]:
its deliveries stay pending), half to `gone` (retry ["0s"]: they end failed). Then, at the full size:

- each batch's 250 rate (the target: last within 10 % of first) and the store on disk per message;
- each CLI listing (`--limit 50`, first page and the next) and the API's lists, wall time per call
  (a CLI call includes starting the process and opening the store);
- `mxhook deliveries retry --all-failed` and `mxhook flush` (= `deliveries retry --all-pending`) on
  the running gateway, with the endpoint back up: how long each takes, and the rate the backlog then
  drains at, against the rate fresh mail is delivered at (measured first, on a fresh store, same
  endpoint, same load);
- a retention purge of every message (the gateway restarted with retention = keep_metadata = 1 s:
  its janitor purges at start) while paced mail arrives: the 250's p50/p99 during the purge, and
  with no purge running.

usage: bench/million.py [--count N] [--batches 5] [--size 2048] [--sessions 20] [--rate 200] [--out FILE]
JSON to bench/results/million-<time>.json; a summary on stdout. Run under the bench lock:
  flock /tmp/mxhook-bench.lock python3 bench/million.py --count 100000
"""
import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from run import (MXBENCH, MXHOOK, PORT_DOWN, PORT_FAST, PORT_MXHOOK, PORT_MXHOOK_HTTP, SECRET, SMTP_SOURCE, Proc,
                 http_post, log, machine, stats)
from gateway import wait_port

CONFIG = """
[smtp]
listen = ["127.0.0.1:{smtp}"]
hostname = "mx.bench.test"
max_sessions = 200
max_sessions_per_ip = 200
max_messages_per_minute_per_ip = 0

[storage]
data_dir = "{data}"
{retention}
[http]
listen = "127.0.0.1:{http}"
public_url = "http://127.0.0.1:{http}"

[auth]
enabled = false

[api]
[[api.tokens]]
name = "bench"
token_sha256 = "{token_sha256}"
scopes = ["read"]

[[domains]]
name = "later.test"
endpoint = "later"

[[domains]]
name = "gone.test"
endpoint = "gone"

[[domains]]
name = "bench.test"
endpoint = "fast"

[endpoints.later]
url = "http://127.0.0.1:{down}/hook"
secret = "{secret}"
retry = ["0s", "1h"]

[endpoints.gone]
url = "http://127.0.0.1:{down}/hook"
secret = "{secret}"
retry = ["0s"]

[endpoints.fast]
url = "http://127.0.0.1:{fast}/hook"
secret = "{secret}"
"""


class Gateway:
    """mxhook serve on a data_dir that outlives it (a restart keeps the store)."""

    def __init__(self, dir, token_sha256, retention=""):
        self.dir = dir
        self.cfg = os.path.join(dir, "gateway.toml")
        with open(self.cfg, "w") as f:
            f.write(CONFIG.format(smtp=PORT_MXHOOK, http=PORT_MXHOOK_HTTP, data=os.path.join(dir, "data"),
                                  retention=retention, token_sha256=token_sha256, down=PORT_DOWN, fast=PORT_FAST,
                                  secret=SECRET))
        self.log = os.path.join(dir, "mxhook.log")
        self.proc = Proc([MXHOOK, "--config", self.cfg, "serve"], self.log)
        wait_port(PORT_MXHOOK, timeout=120)
        wait_port(PORT_MXHOOK_HTTP, timeout=30)

    def cli(self, *args):
        t0 = time.perf_counter()
        r = subprocess.run([MXHOOK, "--config", self.cfg, *args], capture_output=True, text=True, timeout=3600)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"mxhook {' '.join(args)}: {r.stderr.strip()[:300]}")
        return took, r.stdout, r.stderr

    def stop(self):
        self.proc.stop()


def smtp_source(size, sessions, count, rcpt):
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size), "-f", "sender@src.test", "-t", rcpt,
            "-d", f"127.0.0.1:{PORT_MXHOOK}"]
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=7200)
    t1 = time.time()
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {r.stderr.strip()[:300]}")
    return t0, t1


def store_bytes(data):
    """Bytes on disk under data_dir, and of the database file alone (without its WAL)."""
    total = db = 0
    for root, _, files in os.walk(data):
        for f in files:
            try:
                n = os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                continue
            total += n
            if f == "mxhook.db":
                db += n
    return total, db


def query(data, sql):
    """A read of the store (read-only, beside the running gateway: WAL allows it)."""
    con = sqlite3.connect(f"file:{os.path.join(data, 'mxhook.db')}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def wait_until(what, check, timeout, every=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def api_get(path, token):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT_MXHOOK_HTTP}{path}",
                                 headers={"authorization": f"Bearer {token}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.loads(r.read())
    return time.perf_counter() - t0, body


def timed(fn, reps=3):
    """The median of `reps` wall times (ms) of fn(), and fn()'s last result."""
    times, out = [], None
    for _ in range(reps):
        took, *out = fn()
        times.append(took * 1000)
    return round(statistics.median(times), 1), out


def mxbench_send(rate, count, rcpt="x@bench.test", size=2048):
    argv = [MXBENCH, "send", "--server", f"127.0.0.1:{PORT_MXHOOK}", "--rcpt", rcpt, "--size", str(size),
            "--count", str(count), "--sessions", "20", "--reuse", "--rate", f"{rate:.1f}", "--wait-secs", "1"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"mxbench send failed: {r.stderr.strip()[:300]}")
    return json.loads(r.stdout)


def fresh_delivery_rate(work, token_sha256, n, size, sessions):
    """Fresh mail to a live endpoint on an empty store: deliveries per second, first to last."""
    d = tempfile.mkdtemp(prefix="fresh-", dir=work)
    gw = Gateway(d, token_sha256)
    try:
        http_post(PORT_FAST, "/_reset")
        t0, t1 = smtp_source(size, sessions, n, "x@bench.test")
        wait_until("fresh mail delivered", lambda: stats(PORT_FAST)["count"] >= n, 600, 0.2)
        s = stats(PORT_FAST)
        return {"messages": n, "smtp_per_s": round(n / (t1 - t0), 1),
                "delivery_per_s": round((s["count"] - 1) / ((s["last_us"] - s["first_us"]) / 1e6), 1)}
    finally:
        gw.stop()
        shutil.rmtree(d, ignore_errors=True)


def listings(gw, token, data):
    """Wall time (ms, median of 3) of each CLI listing and API list at the store's full size."""
    out = {}
    cli = {
        "messages list": ["messages", "list"],
        "messages list --type email.bounced": ["messages", "list", "--type", "email.bounced"],
        "deliveries list": ["deliveries", "list"],
        "deliveries list --status pending": ["deliveries", "list", "--status", "pending"],
        "deliveries list --status failed": ["deliveries", "list", "--status", "failed"],
        "deliveries list --status succeeded": ["deliveries", "list", "--status", "succeeded"],
        "deliveries list --endpoint gone": ["deliveries", "list", "--endpoint", "gone"],
    }
    for name, args in cli.items():
        ms, (stdout, stderr) = timed(lambda: gw.cli(*args, "--limit", "50"))
        rows = max(0, len(stdout.splitlines()) - 1)
        out[f"{name} --limit 50"] = {"ms": ms, "rows": rows}
        m = re.search(r"--after (\S+)", stderr)
        if m:
            ms2, (stdout2, _) = timed(lambda: gw.cli(*args, "--limit", "50", "--after", m.group(1)))
            out[f"{name} --limit 50 --after (page 2)"] = {"ms": ms2, "rows": max(0, len(stdout2.splitlines()) - 1)}
    # A page deep in the list: the cursor of the millionth-but-one row's time.
    oldest = query(data, "SELECT received_at || '.' || id FROM messages ORDER BY received_at, id LIMIT 1 OFFSET 100")
    ms, (stdout, _) = timed(lambda: gw.cli("messages", "list", "--limit", "50", "--after", oldest))
    out["messages list --limit 50 --after (oldest page)"] = {"ms": ms, "rows": max(0, len(stdout.splitlines()) - 1)}
    for path in ["/v1/messages?limit=50", "/v1/deliveries?limit=50", "/v1/deliveries?status=pending&limit=50",
                 "/v1/deliveries?status=failed&limit=50", "/v1/messages?type=email.bounced&limit=50"]:
        ms, (body,) = timed(lambda: api_get(path, token))
        out[f"GET {path}"] = {"ms": ms, "rows": len(body["data"])}
        if body.get("next"):
            ms2, (body2,) = timed(lambda: api_get(path + "&after=" + body["next"], token))
            out[f"GET {path} (page 2)"] = {"ms": ms2, "rows": len(body2["data"])}
    for k, v in out.items():
        log(f"   {k:70} {v['ms']:8.1f} ms  {v['rows']} rows")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rate", type=float, default=200, help="paced mail during the purge (messages/s)")
    ap.add_argument("--fresh", type=int, default=None, help="messages for the fresh-mail delivery rate")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    for path in (MXHOOK, MXBENCH, SMTP_SOURCE):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: run bench/setup.sh")
    work = tempfile.mkdtemp(prefix="million-")
    token = "mxh_" + "b" * 43
    import hashlib
    token_sha256 = hashlib.sha256(token.encode()).hexdigest()
    result = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "args": vars(args), "loadavg": {"start": open("/proc/loadavg").read().split()[:3]}}
    procs, gw = [], None
    try:
        procs.append(Proc([MXBENCH, "receive", "--port", str(PORT_FAST)], os.path.join(work, "fast.log")))
        wait_port(PORT_FAST)
        fresh_n = args.fresh or max(2000, min(50_000, args.count // 20))
        log(f"fresh mail, {fresh_n} messages to a live endpoint on an empty store:")
        result["fresh"] = fresh_delivery_rate(work, token_sha256, fresh_n, args.size, args.sessions)
        log(f"   {result['fresh']}")

        d = tempfile.mkdtemp(prefix="store-", dir=work)
        data = os.path.join(d, "data")
        gw = Gateway(d, token_sha256)
        per = args.count // args.batches
        batches = []
        log(f"{args.count} messages of {args.size} B in {args.batches} batches, endpoint down:")
        for b in range(args.batches):
            rcpt = "x@later.test" if b % 2 == 0 else "x@gone.test"
            t0, t1 = smtp_source(args.size, args.sessions, per, rcpt)
            total, db = store_bytes(data)
            batches.append({"batch": b + 1, "to": rcpt, "messages": per, "per_s": round(per / (t1 - t0), 1),
                            "store_bytes": total, "db_bytes": db, "loadavg": open("/proc/loadavg").read().split()[:3]})
            log(f"   batch {b + 1}: {batches[-1]['per_s']:8.1f}/s  store {total / 1e6:8.1f} MB  "
                f"({total / (per * (b + 1)):.0f} B/message)  load {batches[-1]['loadavg']}")
        n = per * args.batches
        result["batches"] = batches
        first, last = batches[0]["per_s"], batches[-1]["per_s"]
        result["last_over_first"] = round(last / first, 3)
        log("   waiting for every first attempt to be recorded")
        wait_until("first attempts", lambda: query(data, "SELECT COUNT(*) FROM deliveries WHERE attempts = 0") == 0,
                   3600, 2)
        total, db = store_bytes(data)
        result["store"] = {"messages": n, "bytes": total, "db_bytes": db, "bytes_per_message": round(total / n),
                           "raw_bytes_per_message": args.size,
                           "pending": query(data, "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"),
                           "failed": query(data, "SELECT COUNT(*) FROM deliveries WHERE status = 'failed'")}
        log(f"   store: {result['store']}")

        log(f"listings at {n} messages:")
        result["listings"] = listings(gw, token, data)

        log("the endpoint comes back: retry --all-failed, then flush")
        procs.append(Proc([MXBENCH, "receive", "--port", str(PORT_DOWN)], os.path.join(work, "down.log")))
        wait_port(PORT_DOWN)
        t_retry = time.time()
        took, out, _ = gw.cli("deliveries", "retry", "--all-failed")
        result["retry_all_failed"] = {"secs": round(took, 2), "output": out.strip()}
        log(f"   retry --all-failed: {took:.2f} s: {out.strip()}")
        took, out, _ = gw.cli("flush")
        result["flush"] = {"secs": round(took, 2), "output": out.strip()}
        log(f"   flush: {took:.2f} s: {out.strip()}")
        wait_until("the backlog to drain", lambda: stats(PORT_DOWN)["count"] >= n, 7200, 2)
        s = stats(PORT_DOWN)
        drain = (s["count"] - 1) / ((s["last_us"] - s["first_us"]) / 1e6)
        result["drain"] = {"delivered": s["count"], "per_s": round(drain, 1),
                           "first_after_retry_s": round(s["first_us"] / 1e6 - t_retry, 2),
                           "drained_after_retry_s": round(s["last_us"] / 1e6 - t_retry, 1),
                           "vs_fresh": round(drain / result["fresh"]["delivery_per_s"], 3)}
        log(f"   drain: {result['drain']}")
        wait_until("every delivery recorded as succeeded",
                   lambda: query(data, "SELECT COUNT(*) FROM deliveries WHERE status <> 'succeeded'") == 0, 600, 2)
        gw.stop()

        # Retention: everything is older than 1 s; the janitor purges at start.
        log(f"retention purge of {n} messages under {args.rate:.0f}/s paced mail:")
        gw = Gateway(d, token_sha256, retention='retention = "1s"\nkeep_metadata = "1s"\n')
        t_start = time.time()
        during = []
        while "retention applied" not in open(gw.log, errors="replace").read():
            r = mxbench_send(args.rate, int(args.rate * 5))
            during.append(r["dot_to_reply_ms"])
            log(f"   during: 250 p50 {r['dot_to_reply_ms']['p50']} ms p99 {r['dot_to_reply_ms']['p99']} ms")
            if time.time() - t_start > 7200:
                raise RuntimeError("the purge did not end in 2 h")
        purge_secs = time.time() - t_start
        line = [l for l in open(gw.log, errors="replace") if "retention applied" in l][-1]
        after = mxbench_send(args.rate, int(args.rate * 10))
        left = query(data, "SELECT COUNT(*) FROM messages")
        total, db = store_bytes(data)
        result["purge"] = {
            "messages": n, "secs_upper_bound": round(purge_secs, 1), "log": line.strip()[-200:],
            "during_250_ms": during, "during_p99_max_ms": max(x["p99"] for x in during) if during else None,
            "during_p50_median_ms": statistics.median(x["p50"] for x in during) if during else None,
            "no_purge_250_ms": after["dot_to_reply_ms"], "messages_left": left, "store_bytes_after": total}
        log(f"   purge: {purge_secs:.0f} s; after: {after['dot_to_reply_ms']}; messages left {left}")
    finally:
        if gw:
            gw.stop()
        for p in procs:
            p.stop()
        result["loadavg"]["end"] = open("/proc/loadavg").read().split()[:3]
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                       "million-" + time.strftime("%Y%m%d-%H%M%S") + ".json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"results: {out}")
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: result.get(k) for k in ("fresh", "last_over_first", "store", "retry_all_failed", "flush",
                                                  "drain")}, indent=1))


if __name__ == "__main__":
    main()
