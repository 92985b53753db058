#!/usr/bin/env python3
"""The headline load with N Server-Sent-Events readers on a stream that gets every message.

Per gateway build (MXHOOK_BIN, and MXHOOK_BIN_B interleaved with it, as run.py) and per N (default
0 and 1000), on a fresh gateway each time:

1. N readers connect to GET /v1/streams/bench/events (aiohttp, one asyncio process) and wait;
2. throughput: smtp-source bursts `--count` 5 KB messages over 20 reused sessions (the headline
   scenario): 250/s, and end to end (the webhook receiver got them all);
3. latency: mxbench send paces `--rate` messages/s for `--secs` s: end of DATA -> webhook received
   (mxbench), and end of DATA -> event received by each SSE reader (every reader, every event);
4. every reader must have received every event of both phases, once, in cursor order (counted and
   checked; a run where one did not fails), and how long that took after the burst's last 250;
5. the gateway's CPU time (utime+stime over the whole measurement) and peak RSS (VmHWM).

The readers run on the same machine (and cores) as the gateway and the load: their CPU is not free,
which is noted with the results. Needs what run.py needs (bench/setup.sh) and aiohttp.

usage: bench/sse_consumers.py [--readers 0,1000] [--reps 3] [--count 2000] [--rate 100] [--secs 10] [--out FILE]
"""
import argparse
import asyncio
import hashlib
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the gateway, the receiver, the load: as the headline benchmark runs them)
from run import MXBENCH, PORT_FAST, PORT_MXHOOK, PORT_MXHOOK_HTTP, log, proc_status, stats  # noqa: E402

TOKEN = "mxbench-sse-token-0123456789abcdef"
EXTRA = f"""
[api]
max_failed_auth_per_minute = 1000
[[api.tokens]]
name = "bench"
token_sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"

[streams.bench]
events = ["*"]

[[routes]]
match = "*@bench.test"
endpoints = ["fast"]
streams = ["bench"]
"""
URL = f"http://127.0.0.1:{PORT_MXHOOK_HTTP}/v1/streams/bench/events"
TAG = re.compile(rb"mxb-(\d+)")


def cpu_secs(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def now_us():
    return time.time_ns() // 1000


class Reader:
    """One SSE connection: counts events, checks their cursors only grow, and (while `timing` is
    set) records when each arrived. Reader 0 also notes each event's `mxb-N` tag."""

    def __init__(self, i):
        self.i, self.count, self.last, self.errors = i, 0, 0, 0
        self.timing = False
        self.arrivals = []  # (cursor, arrival_us) while timing
        self.tags = {} if i == 0 else None  # cursor -> tag
        self.connected = asyncio.Event()
        self.changed = asyncio.Event()

    async def run(self, session):
        async with session.get(URL, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=aiohttp.ClientTimeout(total=None)) as r:
            if r.status != 200:
                raise RuntimeError(f"reader {self.i}: HTTP {r.status}")
            self.connected.set()
            buf = bytearray()
            async for chunk in r.content.iter_any():
                buf += chunk
                at = now_us()
                start = 0
                while True:
                    end = buf.find(b"\n\n", start)
                    if end < 0:
                        break
                    # An event is `id: CURSOR\ndata: JSON\n\n`; a heartbeat is `:heartbeat\n\n`.
                    if buf.startswith(b"id: ", start):
                        nl = buf.find(b"\n", start)
                        cursor = int(buf[start + 4 : nl])
                        if cursor <= self.last:
                            self.errors += 1
                        self.last = cursor
                        self.count += 1
                        if self.timing:
                            self.arrivals.append((cursor, at))
                        if self.tags is not None:
                            m = TAG.search(buf, nl, end)
                            if m:
                                self.tags[cursor] = int(m.group(1))
                    start = end + 2
                del buf[:start]
                self.changed.set()


async def wait_all(readers, want, timeout):
    """Seconds until every reader has `want` events (None: the timeout ran out)."""
    t0 = time.time()
    while True:
        if all(r.count >= want for r in readers):
            return time.time() - t0
        if time.time() - t0 > timeout:
            return None
        await asyncio.sleep(0.05)


async def subprocess_run(argv, timeout):
    p = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {err.decode().strip()[:300]}")
    return out.decode()


async def wait_received(count, t0, timeout):
    deadline = time.time() + timeout
    while True:
        s = await asyncio.to_thread(stats, PORT_FAST)
        if s["count"] >= count:
            return s["last_us"] / 1e6 - t0
        if time.time() > deadline:
            return None
        await asyncio.sleep(0.05)


def pct(v, q):
    v = sorted(v)
    return v[min(len(v), max(1, int(len(v) * q + 0.999999))) - 1] if v else None


async def measure(args, work, binary, n):
    mx = run.Mxhook(work, extra=EXTRA, binary=binary)
    out = {"readers": n}
    tasks = []
    session = None
    try:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), read_bufsize=1 << 18)
        readers = [Reader(i) for i in range(n)]
        tasks = [asyncio.create_task(r.run(session)) for r in readers]
        await asyncio.wait_for(asyncio.gather(*(r.connected.wait() for r in readers)), 60)
        await asyncio.to_thread(run.http_post, PORT_FAST, "/_reset")
        cpu0 = cpu_secs(mx.pid)

        # Throughput: the headline burst.
        t0 = time.time()
        argv = [run.SMTP_SOURCE, "-s", "20", "-m", str(args.count), "-l", "5120", "-d", "-f", "sender@src.test", "-t", "x@bench.test", f"127.0.0.1:{PORT_MXHOOK}"]
        await subprocess_run(argv, 600)
        t1 = time.time()
        e2e = await wait_received(args.count, t0, 300)
        drained = await wait_all(readers, args.count, 600)
        out["smtp_per_s"] = args.count / (t1 - t0)
        out["e2e_per_s"] = args.count / e2e if e2e else None
        # Every reader has every event of the burst `drained` s after the last 250.
        out["sse_all_after_250_s"] = None if drained is None else max(0.0, time.time() - t1)
        out["sse_events_per_s"] = n * args.count / (time.time() - t0) if n and drained is not None else None

        # Latency: paced, end of DATA -> webhook and -> each reader.
        for r in readers:
            r.timing = True
        count = int(args.rate * args.secs)
        sent_file = os.path.join(mx.dir, "sent.txt")
        argv = [MXBENCH, "send", "--server", f"127.0.0.1:{PORT_MXHOOK}", "--rcpt", "x@bench.test", "--size", "5120",
                "--count", str(count), "--sessions", "20", "--reuse", "--rate", f"{args.rate:.1f}",
                "--receiver", f"127.0.0.1:{PORT_FAST}", "--wait-secs", "120", "--sent-file", sent_file]
        lat = json.loads(await subprocess_run(argv, 900))
        drained2 = await wait_all(readers, args.count + count, 600)
        out["cpu_s"] = cpu_secs(mx.pid) - cpu0
        out["hwm_kib"] = proc_status(mx.pid, "VmHWM")
        out["latency"] = {"rate": args.rate, "accepted": lat["accepted"], "webhook_ms": lat.get("e2e_ms"), "dot_to_250_ms": lat["dot_to_reply_ms"]}
        if n:
            dots = dict(map(int, line.split()) for line in open(sent_file))
            tag_of = readers[0].tags
            sse = [(at - dots[tag_of[c]]) / 1000 for r in readers for c, at in r.arrivals if c in tag_of and tag_of[c] in dots]
            out["latency"]["sse_ms"] = {"p50": pct(sse, 0.5), "p90": pct(sse, 0.9), "p99": pct(sse, 0.99), "max": max(sse, default=None), "n": len(sse)}
        complete = drained is not None and drained2 is not None
        errors = sum(r.errors for r in readers)
        wrong = [r.i for r in readers if r.count != args.count + count]
        out["every_reader_every_event"] = complete and not errors and not wrong
        if not out["every_reader_every_event"]:
            raise RuntimeError(f"readers incomplete: {len(wrong)} with a wrong count, {errors} out-of-order, drained={drained},{drained2}")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if session:
            await session.close()
        mx.stop()
    return out


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", default="0,1000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--count", type=int, default=2000, help="messages in the throughput burst")
    ap.add_argument("--rate", type=float, default=100.0, help="messages/s in the latency phase")
    ap.add_argument("--secs", type=float, default=10.0, help="seconds of the latency phase")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateway inherits it
    builds = [("a", run.MXHOOK)] + ([("b", run.MXHOOK_B)] if run.MXHOOK_B else [])
    ns = [int(x) for x in args.readers.split(",")]
    work = tempfile.mkdtemp(prefix="mxbench-sse-")
    result = {"machine": run.machine(), "builds": dict(builds), "args": vars(args), "runs": []}
    procs = []
    try:
        if run.AUTH:
            procs.append(run.Proc([sys.executable, run.DNS, str(run.PORT_DNS)], os.path.join(work, "dns.log")))
        procs.append(run.Proc([MXBENCH, "receive", "--port", str(PORT_FAST)], os.path.join(work, "fast.log")))
        run.wait_port(PORT_FAST)
        for rep in range(args.reps):
            order = [(b, n) for n in ns for b in builds]
            order = order[rep % len(order):] + order[: rep % len(order)]
            for (name, binary), n in order:
                r = await measure(args, work, binary, n)
                r.update(build=name, rep=rep + 1, loadavg=open("/proc/loadavg").read().split()[:3])
                result["runs"].append(r)
                log(f"  [{rep + 1}] build {name} readers {n:5}: 250 {r['smtp_per_s']:7.1f}/s e2e {r['e2e_per_s'] or 0:7.1f}/s "
                    f"readers done {r['sse_all_after_250_s']} s after the last 250; webhook p99 {r['latency']['webhook_ms']['p99']} ms, "
                    f"sse p99 {r['latency'].get('sse_ms', {}).get('p99')} ms; cpu {r['cpu_s']:.1f} s, VmHWM {r['hwm_kib'] / 1024:.0f} MiB")
    finally:
        for p in procs:
            p.stop()
        result["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
        out = args.out or os.path.join(run.ROOT, "bench/results", time.strftime("sse-%Y%m%d-%H%M%S") + ".json")
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"results: {out}")
    print(report(result))


def report(result):
    rows = ["| build | readers | 250/s | e2e/s | all readers done after last 250 | webhook p99 ms | SSE p99 ms | gateway CPU s | VmHWM MiB |", "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["build"], r["readers"]) for r in result["runs"]})

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    def f(x, d=0):
        return "–" if x is None else f"{x:,.{d}f}"

    for b, n in keys:
        rs = [r for r in result["runs"] if (r["build"], r["readers"]) == (b, n)]
        rows.append(
            f"| {b} | {n} | {f(med(r['smtp_per_s'] for r in rs))} | {f(med(r['e2e_per_s'] for r in rs))} "
            f"| {f(med(r['sse_all_after_250_s'] for r in rs), 1)} s | {f(med(r['latency']['webhook_ms']['p99'] for r in rs), 1)} "
            f"| {f(med(r['latency'].get('sse_ms', {}).get('p99') for r in rs), 1)} | {f(med(r['cpu_s'] for r in rs), 1)} "
            f"| {f(med(r['hwm_kib'] / 1024 for r in rs))} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    asyncio.run(main())
