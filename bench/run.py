#!/usr/bin/env python3
"""mxhook benchmark: mxhook (release build, fsync'd 250 as shipped) against smtp-sink (accepts and
discards: the loopback SMTP limit) and two peers that POST each message before their 250 (aiosmtpd;
Haraka with a mailparser queue plugin, in the throughput scenarios), in the same run, interleaved,
each measurement repeated (default 3x) and reported as the median.

Load: Postfix's smtp-source for throughput; bench/mxbench (paced sender + webhook receiver) for
end-to-end latency and the delivery scenarios. See bench/README.md. Run bench/setup.sh first.

usage: bench/run.py [--reps N] [--quick] [--only throughput,latency,big,idle,slow,down] [--out FILE]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from gateway import wait_port
import peer_haraka
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MXHOOK = os.environ.get("MXHOOK_BIN", os.path.join(ROOT, "target/release/mxhook"))
# A second build measured in the same run, interleaved with the first (before/after a change).
MXHOOK_B = os.environ.get("MXHOOK_BIN_B")
MXBENCH = os.environ.get("MXBENCH_BIN", os.path.join(ROOT, "bench/mxbench/target/release/mxbench"))
PEER = os.path.join(ROOT, "bench/peer_aiosmtpd.py")
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

PORT_MXHOOK, PORT_MXHOOK_HTTP, PORT_SINK, PORT_PEER = 25250, 25251, 25260, 25270
PORT_HARAKA = 25265
# Haraka's cluster workers (smtp.ini `nodes`): a number or "cpus" (one per core); 1 was the faster on 2 cores. BENCH_HARAKA=0 leaves Haraka out.
HARAKA_NODES = os.environ.get("HARAKA_NODES", "1")
HARAKA = os.environ.get("BENCH_HARAKA", "1") != "0"
PORT_FAST, PORT_SLOW, PORT_DOWN = 9101, 9102, 9103
PORT_DNS = 25353
DNS = os.path.join(ROOT, "bench/dns.py")
# Sender authentication against the local DNS responder; MXHOOK_AUTH=0 leaves [auth] out (builds without it).
AUTH = "" if os.environ.get("MXHOOK_AUTH") == "0" else f'\n[auth]\ndns = ["127.0.0.1:{PORT_DNS}"]\n'

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CONFIG = """
[smtp]
listen = ["127.0.0.1:{smtp}"]
hostname = "mx.bench.test"
max_message_size = "60MB"
max_sessions = 200
max_sessions_per_ip = 200
max_messages_per_minute_per_ip = 0

[storage]
data_dir = "{data}"

[http]
listen = "127.0.0.1:{http}"
public_url = "http://127.0.0.1:{http}"

[[domains]]
name = "bench.test"
endpoint = "fast"

[[domains]]
name = "slow.test"
endpoint = "slow"

[[domains]]
name = "down.test"
endpoint = "down"

[endpoints.fast]
url = "http://127.0.0.1:{fast}/hook"
secret = "{secret}"

[endpoints.slow]
url = "http://127.0.0.1:{slow}/hook"
secret = "{secret}"

[endpoints.down]
url = "http://127.0.0.1:{down}/hook"
secret = "{secret}"
{extra}
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def proc_status(pid, key):
    """VmRSS / VmHWM of a process in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def cpu_seconds(pids):
    """User + system CPU time of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def http_post(port, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def stats(port):
    return json.loads(http_get(port, "/_stats"))


class Proc:
    def __init__(self, argv, log_path=None, **kw):
        self.log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=self.log, start_new_session=True, **kw)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Mxhook:
    """A fresh mxhook (new data_dir) per measurement: the database does not grow across runs."""

    def __init__(self, work, extra="", binary=MXHOOK):
        self.dir = tempfile.mkdtemp(prefix="mxhook-", dir=work)
        cfg = os.path.join(self.dir, "gateway.toml")
        with open(cfg, "w") as f:
            f.write(
                CONFIG.format(
                    smtp=PORT_MXHOOK,
                    http=PORT_MXHOOK_HTTP,
                    data=os.path.join(self.dir, "data"),
                    fast=PORT_FAST,
                    slow=PORT_SLOW,
                    down=PORT_DOWN,
                    secret=SECRET,
                    extra=AUTH + extra,
                )
            )
        self.proc = Proc([binary, "--config", cfg, "serve"], os.path.join(self.dir, "mxhook.log"))
        wait_port(PORT_MXHOOK)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def smtp_source(port, size, sessions, count, reuse, rcpt):
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size), "-f", "sender@src.test", "-t", rcpt]
    if reuse:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    t1 = time.time()
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {r.stderr.strip()[:300]}")
    return t0, t1


def wait_received(port, count, t0, timeout):
    deadline = time.time() + timeout
    s = stats(port)
    while s["count"] < count and time.time() < deadline:
        time.sleep(0.05)
        s = stats(port)
    if s["count"] < count:
        return None
    return s["last_us"] / 1e6 - t0


def mxbench_send(port, rcpt, size, count, sessions, reuse, rate=None, receiver=PORT_FAST, wait=60):
    argv = [MXBENCH, "send", "--server", f"127.0.0.1:{port}", "--rcpt", rcpt, "--size", str(size)]
    argv += ["--count", str(count), "--sessions", str(sessions), "--wait-secs", str(wait)]
    if reuse:
        argv.append("--reuse")
    if rate:
        argv += ["--rate", f"{rate:.1f}"]
    if receiver:
        argv += ["--receiver", f"127.0.0.1:{receiver}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"mxbench send failed: {r.stderr.strip()[:300]}")
    if r.stderr.strip():
        log("   mxbench:", r.stderr.strip()[:300])
    return json.loads(r.stdout)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- scenarios

SCENARIOS = [
    # (name, size, sessions, reuse)
    ("5KB, 20 sessions, reused", 5120, 20, True),
    ("5KB, 20 sessions, new conn/msg", 5120, 20, False),
    ("5KB, 1 session, reused", 5120, 1, True),
    ("5KB, 1 session, new conn/msg", 5120, 1, False),
    ("100KB, 20 sessions, reused", 102400, 20, True),
    ("100KB, 20 sessions, new conn/msg", 102400, 20, False),
    ("100KB, 1 session, reused", 102400, 1, True),
    ("100KB, 1 session, new conn/msg", 102400, 1, False),
]


def count_for(target, size, sessions, quick):
    base = 2000 if sessions > 1 else 600
    if size > 10000:
        base //= 2
    if target in ("peer", "haraka"):
        base //= 3
    if quick:
        base //= 4
    return base


def throughput(args, work, peer, haraka=None, sink=None):
    """Each target's 250 rate and end-to-end rate, and the server's CPU time per message (ms; the
    server's processes only, from the first MAIL to the last webhook: a figure the other loads on the
    machine move less than the rates, since a busy machine also gives a multi-threaded server a larger
    share of the cores than a single-threaded one)."""
    results = {}
    order = ["smtp-sink", "mxhook", "peer"] + (["haraka"] if haraka else []) + (["mxhook-b"] if MXHOOK_B else [])
    for rep in range(args.reps):
        for name, size, sessions, reuse in [x for x in SCENARIOS if args.scenario in x[0]]:
            for target in order[rep % len(order) :] + order[: rep % len(order)]:
                n = count_for(target, size, sessions, args.quick)
                row = results.setdefault(name, {}).setdefault(target, {"smtp": [], "e2e": []})
                row.setdefault("cpu_ms", [])
                if target == "smtp-sink":
                    c0 = cpu_seconds([sink.pid]) if sink else None
                    t0, t1 = smtp_source(PORT_SINK, size, sessions, n, reuse, "x@bench.test")
                    row["smtp"].append(n / (t1 - t0))
                    row["e2e"].append(None)
                    row["cpu_ms"].append((cpu_seconds([sink.pid]) - c0) * 1000 / n if sink else None)
                elif target in ("mxhook", "mxhook-b"):
                    mx = Mxhook(work, binary=MXHOOK_B if target == "mxhook-b" else MXHOOK)
                    try:
                        http_post(PORT_FAST, "/_reset")
                        c0 = cpu_seconds([mx.pid])
                        t0, t1 = smtp_source(PORT_MXHOOK, size, sessions, n, reuse, "x@bench.test")
                        e2e = wait_received(PORT_FAST, n, t0, 120)
                        row["cpu_ms"].append((cpu_seconds([mx.pid]) - c0) * 1000 / n)
                        row["smtp"].append(n / (t1 - t0))
                        row["e2e"].append(n / e2e if e2e else None)
                    finally:
                        mx.stop()
                else:
                    port = PORT_HARAKA if target == "haraka" else PORT_PEER
                    pids = haraka.pids() if target == "haraka" else [peer.pid]
                    http_post(PORT_FAST, "/_reset")
                    c0 = cpu_seconds(pids)
                    t0, t1 = smtp_source(port, size, sessions, n, reuse, "x@bench.test")
                    e2e = wait_received(PORT_FAST, n, t0, 120)
                    row["cpu_ms"].append((cpu_seconds(pids) - c0) * 1000 / n)
                    row["smtp"].append(n / (t1 - t0))
                    row["e2e"].append(n / e2e if e2e else None)
                cpu = row["cpu_ms"][-1]
                log(
                    f"  [{rep + 1}] {name:34} {target:9} n={n:5} smtp {row['smtp'][-1]:8.1f}/s  e2e {row['e2e'][-1] or 0:8.1f}/s"
                    + (f"  cpu {cpu:.2f} ms/msg" if cpu is not None else "")
                )
    return results


def latency(args, work, peer, peaks):
    """End of DATA -> webhook received, at half of each gateway's own peak (5KB, 20 sessions, reused)."""
    out = {"mxhook": [], "peer": []}
    for rep in range(args.reps):
        for target in (["mxhook", "peer"] if rep % 2 == 0 else ["peer", "mxhook"]):
            rate = peaks[target] / 2
            n = max(200, int(rate * (3 if args.quick else 10)))
            if target == "mxhook":
                mx = Mxhook(work)
                try:
                    r = mxbench_send(PORT_MXHOOK, "x@bench.test", 5120, n, 20, True, rate=rate)
                finally:
                    mx.stop()
            else:
                r = mxbench_send(PORT_PEER, "x@bench.test", 5120, n, 20, True, rate=rate)
            r["rate"] = rate
            out[target].append(r)
            log(f"  [{rep + 1}] latency {target:7} at {rate:.0f}/s: e2e {r['e2e_ms']} dot->250 {r['dot_to_reply_ms']}")
    return out


def big(args, work, peer):
    """A 50 MB message: time from end of DATA to the reply, time until its webhook, peak RSS."""
    size = 50 * 1000 * 1000
    out = {"mxhook": [], "peer": []}
    for rep in range(args.reps):
        mx = Mxhook(work)
        try:
            before = proc_status(mx.pid, "VmHWM")
            r = mxbench_send(PORT_MXHOOK, "x@bench.test", size, 1, 1, True, wait=120)
            time.sleep(0.5)
            r["hwm_kib_before"], r["hwm_kib"] = before, proc_status(mx.pid, "VmHWM")
            r["rss_kib_after"] = proc_status(mx.pid, "VmRSS")
        finally:
            mx.stop()
        out["mxhook"].append(r)
        # The peer keeps running across runs: its VmHWM is its peak so far.
        r2 = mxbench_send(PORT_PEER, "x@bench.test", size, 1, 1, True, wait=120)
        r2["hwm_kib"] = proc_status(peer.pid, "VmHWM")
        out["peer"].append(r2)
        log(f"  [{rep + 1}] 50MB: mxhook dot->250 {r['dot_to_reply_ms']['p50']} ms, e2e {r.get('e2e_ms')}, "
            f"VmHWM {r['hwm_kib'] / 1024:.0f} MiB; peer dot->250 {r2['dot_to_reply_ms']['p50']} ms, VmHWM {r2['hwm_kib'] / 1024:.0f} MiB")
    return out


def idle(args, work, peer):
    out = []
    for rep in range(args.reps):
        mx = Mxhook(work)
        try:
            time.sleep(2)
            fresh = proc_status(mx.pid, "VmRSS")
            smtp_source(PORT_MXHOOK, 5120, 20, 500, True, "x@bench.test")
            wait_received(PORT_FAST, 500, time.time(), 60)
            time.sleep(5)
            after = proc_status(mx.pid, "VmRSS")
        finally:
            mx.stop()
        out.append({"fresh_kib": fresh, "after_load_kib": after})
        log(f"  [{rep + 1}] idle RSS: fresh {fresh / 1024:.1f} MiB, after 500 messages {after / 1024:.1f} MiB")
    return out


def slow(args, work, peer):
    """Delivery throughput to an endpoint answering in 100 ms (mxhook's CONCURRENCY attempts in flight)."""
    n = 400 if args.quick else 1000
    out = {"mxhook": [], "peer": []}
    for rep in range(args.reps):
        mx = Mxhook(work)
        try:
            http_post(PORT_SLOW, "/_reset")
            t0, t1 = smtp_source(PORT_MXHOOK, 5120, 20, n, True, "x@slow.test")
            e2e = wait_received(PORT_SLOW, n, t0, 300)
            s = stats(PORT_SLOW)
            out["mxhook"].append({"smtp": n / (t1 - t0), "delivery": (s["count"] - 1) / ((s["last_us"] - s["first_us"]) / 1e6), "e2e": n / e2e if e2e else None})
        finally:
            mx.stop()
        # The peer answers 250 only after its POST: its SMTP rate is its delivery rate.
        http_post(PORT_SLOW, "/_reset")
        t0, t1 = smtp_source(PORT_PEER + 1, 5120, 20, n // 2, True, "x@slow.test")
        e2e = wait_received(PORT_SLOW, n // 2, t0, 300)
        out["peer"].append({"smtp": (n // 2) / (t1 - t0), "e2e": (n // 2) / e2e if e2e else None})
        log(f"  [{rep + 1}] slow endpoint: mxhook {out['mxhook'][-1]}, peer {out['peer'][-1]}")
    return out


def down(args, work, peer):
    """One endpoint hangs (accepts, never answers: each attempt waits for the 10 s timeout) with a
    backlog of its deliveries; fresh mail to a healthy endpoint must still go out promptly."""
    backlog = 100 if args.quick else 200
    n = 500 if args.quick else 1000
    out = []
    for rep in range(args.reps):
        mx = Mxhook(work)
        try:
            smtp_source(PORT_MXHOOK, 5120, 20, backlog, True, "x@down.test")
            time.sleep(1)
            r = mxbench_send(PORT_MXHOOK, "x@bench.test", 5120, n, 20, True, rate=100, wait=180)
            out.append(r)
        finally:
            mx.stop()
        log(f"  [{rep + 1}] endpoint down ({backlog} queued for it): fresh mail e2e {r.get('e2e_ms')}, delivered {r.get('delivered')}/{n}")
    return out


def start_haraka(work, result):
    """Haraka for the throughput scenarios, if bench/setup.sh installed it: started from a fresh copy of
    bench/haraka/config, checked to answer (a message through to the receiver), then warmed up with a
    few hundred messages so V8 has compiled the hot paths, as in a server that has been running."""
    if not HARAKA:
        return None
    if not peer_haraka.installed():
        log("Haraka not installed (bench/setup.sh: npm ci in bench/haraka): left out")
        return None
    try:
        h = peer_haraka.Haraka(PORT_HARAKA, f"http://127.0.0.1:{PORT_FAST}/hook", HARAKA_NODES, work)
    except RuntimeError as e:
        log(f"Haraka did not start, left out: {e}")
        result["haraka"] = {"error": str(e)[:2000]}
        return None
    smtp_source(PORT_HARAKA, 5120, 20, 400, True, "x@bench.test")
    smtp_source(PORT_HARAKA, 102400, 20, 100, False, "x@bench.test")
    result["haraka"] = {"version": peer_haraka.version(), "nodes": HARAKA_NODES, "workers": h.workers()}
    log(f"Haraka {result['haraka']['version']} on {PORT_HARAKA}, nodes={HARAKA_NODES} ({h.workers()} workers)")
    return h


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "mem_gib": round(mem / 1024 / 1024, 1),
        "kernel": os.uname().release,
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "auth": bool(AUTH),
        "node": subprocess.run([peer_haraka.NODE, "--version"], capture_output=True, text=True).stdout.strip() if peer_haraka.installed() else None,
        "mxhook_bin": MXHOOK,
        "mxhook": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer messages per run (a smoke test, noisier)")
    ap.add_argument("--only", default="throughput,latency,big,idle,slow,down")
    ap.add_argument("--out", default=None)
    ap.add_argument("--scenario", default="", help="only the throughput scenarios whose name contains this")
    ap.add_argument("--peaks", default=None, help="JSON {mxhook: r, peer: r}: latency without a throughput phase")
    args = ap.parse_args()
    only = set(args.only.split(","))
    for path in (MXHOOK, MXBENCH, SMTP_SOURCE, SMTP_SINK):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: run bench/setup.sh")
    work = tempfile.mkdtemp(prefix="mxbench-")
    procs = []
    result = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "reps": args.reps, "quick": args.quick}
    try:
        procs.append(Proc([sys.executable, DNS, str(PORT_DNS)], os.path.join(work, "dns.log")))
        procs.append(Proc([MXBENCH, "receive", "--port", str(PORT_FAST)], os.path.join(work, "fast.log")))
        procs.append(Proc([MXBENCH, "receive", "--port", str(PORT_SLOW), "--delay-ms", "100"], os.path.join(work, "slow.log")))
        procs.append(Proc([MXBENCH, "receive", "--port", str(PORT_DOWN), "--blackhole"], os.path.join(work, "down.log")))
        sink_argv = [SMTP_SINK] + (["-u", "nobody"] if os.geteuid() == 0 else []) + [f"127.0.0.1:{PORT_SINK}", "256"]
        sink = Proc(sink_argv, os.path.join(work, "sink.log"))
        procs.append(sink)
        peer = Proc([sys.executable, PEER, str(PORT_PEER), f"http://127.0.0.1:{PORT_FAST}/hook"], os.path.join(work, "peer.log"))
        procs.append(peer)
        procs.append(Proc([sys.executable, PEER, str(PORT_PEER + 1), f"http://127.0.0.1:{PORT_SLOW}/hook"], os.path.join(work, "peer-slow.log")))
        for port in (PORT_FAST, PORT_SLOW, PORT_DOWN, PORT_SINK, PORT_PEER, PORT_PEER + 1):
            wait_port(port)
        if "throughput" in only:
            haraka = start_haraka(work, result)
            if haraka:
                procs.append(haraka)
            log("throughput (smtp-source):")
            result["throughput"] = throughput(args, work, peer, haraka, sink)
            if haraka:
                haraka.stop()
        peaks = json.loads(args.peaks) if args.peaks else None
        if peaks is None and "throughput" in result:
            row = result["throughput"].get("5KB, 20 sessions, reused")
            peaks = row and {t: min(median(row[t]["smtp"]), median(row[t]["e2e"])) for t in ("mxhook", "peer")}
        if "latency" in only and peaks:
            log(f"latency at half of peak {peaks}:")
            result["latency"] = latency(args, work, peer, peaks)
        if "big" in only:
            log("50 MB message:")
            result["big"] = big(args, work, peer)
        if "idle" in only:
            log("idle RSS:")
            result["idle"] = idle(args, work, peer)
        if "slow" in only:
            log("slow endpoint (100 ms):")
            result["slow"] = slow(args, work, peer)
        if "down" in only:
            log("endpoint down:")
            result["down"] = down(args, work, peer)
    finally:
        for p in procs:
            p.stop()
        result["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
        out = args.out or os.path.join(ROOT, "bench/results", time.strftime("%Y%m%d-%H%M%S") + ".json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"results: {out}")
        shutil.rmtree(work, ignore_errors=True)
    print(report(result))


def fmt(x, d=0):
    return "–" if x is None else f"{x:,.{d}f}"


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}×"


def report(r):
    """Markdown tables of the medians."""
    lines = []
    if "throughput" in r:
        har = any("haraka" in row for row in r["throughput"].values())
        lines += [
            "| Scenario | smtp-sink 250/s | mxhook 250/s | mxhook end-to-end/s | peer 250/s | peer end-to-end/s | mxhook / sink | mxhook / peer (e2e) |"
            + (" Haraka 250/s | Haraka end-to-end/s | mxhook / Haraka (e2e) |" if har else ""),
            "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if har else ""),
        ]
        for name, row in r["throughput"].items():
            sink = median(row["smtp-sink"]["smtp"])
            pe, pee = median(row["peer"]["smtp"]), median(row["peer"]["e2e"])
            ha, hae = (median(row["haraka"]["smtp"]), median(row["haraka"]["e2e"])) if "haraka" in row else (None, None)
            for label, key in ((name, "mxhook"), (f"{name}, MXHOOK_BIN_B", "mxhook-b")):
                if key not in row:
                    continue
                mx, mxe = median(row[key]["smtp"]), median(row[key]["e2e"])
                lines.append(
                    f"| {label} | {fmt(sink)} | {fmt(mx)} | {fmt(mxe)} | {fmt(pe)} | {fmt(pee)} | {ratio(mx, sink)} | {ratio(mxe, pee)} |"
                    + (f" {fmt(ha)} | {fmt(hae)} | {ratio(mxe, hae)} |" if har else "")
                )
        lines.append("")
        targets = [t for t in ("smtp-sink", "mxhook", "mxhook-b", "peer", "haraka") if any(t in row for row in r["throughput"].values())]
        if any(row.get(t, {}).get("cpu_ms") for row in r["throughput"].values() for t in targets):
            lines += ["| Server CPU ms per message | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
            for name, row in r["throughput"].items():
                lines.append(f"| {name} | " + " | ".join(fmt(median(row.get(t, {}).get("cpu_ms", [])), 2) for t in targets) + " |")
            lines.append("")
    if "latency" in r:
        lines += ["| Latency, 5KB, 20 sessions | rate | e2e p50 ms | e2e p99 ms | dot→250 p50 ms | dot→250 p99 ms |", "|---|---:|---:|---:|---:|---:|"]
        for t, runs in r["latency"].items():
            m = lambda k, q: median([x[k][q] for x in runs if x.get(k)])
            lines.append(
                f"| {t} | {fmt(median([x['rate'] for x in runs]))}/s | {fmt(m('e2e_ms', 'p50'), 1)} | {fmt(m('e2e_ms', 'p99'), 1)} | "
                f"{fmt(m('dot_to_reply_ms', 'p50'), 1)} | {fmt(m('dot_to_reply_ms', 'p99'), 1)} |"
            )
        lines.append("")
    if "big" in r:
        mx, pe = r["big"]["mxhook"], r["big"]["peer"]
        lines.append(
            f"50 MB message: mxhook dot→250 {fmt(median([x['dot_to_reply_ms']['p50'] for x in mx]))} ms, "
            f"peak RSS (VmHWM) {fmt(median([x['hwm_kib'] for x in mx]) / 1024)} MiB; "
            f"peer dot→250 {fmt(median([x['dot_to_reply_ms']['p50'] for x in pe]))} ms, VmHWM {fmt(median([x['hwm_kib'] for x in pe]) / 1024)} MiB"
        )
    if "idle" in r:
        lines.append(
            f"Idle RSS: fresh {fmt(median([x['fresh_kib'] for x in r['idle']]) / 1024, 1)} MiB, "
            f"after load {fmt(median([x['after_load_kib'] for x in r['idle']]) / 1024, 1)} MiB"
        )
    if "slow" in r:
        lines.append(
            f"Slow endpoint (100 ms): mxhook delivers {fmt(median([x['delivery'] for x in r['slow']['mxhook']]))}/s "
            f"(SMTP {fmt(median([x['smtp'] for x in r['slow']['mxhook']]))}/s); peer {fmt(median([x['smtp'] for x in r['slow']['peer']]))}/s"
        )
    if "down" in r:
        d = r["down"]
        lines.append(
            f"Endpoint down: fresh mail at 100/s, delivered {fmt(median([x.get('delivered') for x in d]))}, "
            f"e2e p50 {fmt(median([x['e2e_ms']['p50'] for x in d if x.get('e2e_ms')]), 1)} ms, "
            f"p99 {fmt(median([x['e2e_ms']['p99'] for x in d if x.get('e2e_ms')]), 1)} ms"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
