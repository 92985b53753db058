#!/usr/bin/env python3
"""The store backends in one run: SQLite (one gateway, data_dir) against PostgreSQL with one gateway and
with three gateways sharing one database (issue 20).

On a 2-core machine the three gateways share the cores with PostgreSQL, the load generator and the
receiver, so the point is not a speed-up: it is what a message costs each setup (CPU milliseconds of the
gateways and of PostgreSQL per message) and what coordination between gateways adds. For PostgreSQL the
run also reads what each message cost the database (commits, WAL records and bytes, WAL syncs, database
growth), the figures the sizing model in docs/architecture.md predicts.

Load: Postfix's smtp-source, 5 KB, 20 reused sessions in all (split evenly over the gateways), one
endpoint (bench/mxbench receive) answering 200. PostgreSQL is a throwaway cluster started here (initdb in
a temp dir; as the `postgres` user when run as root), fsync and synchronous_commit on, as in production.

usage: bench/cluster.py [--reps 3] [--count 3000] [--size 5120] [--sessions 20] [--out FILE]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from gateway import free_port, wait_port
from run import MXBENCH, MXHOOK, PORT_FAST, SECRET, SMTP_SOURCE, Proc, http_post, log, machine, median, stats

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
# Three gateways: SMTP and HTTP port pairs from the bench's range (25250-25270).
PORTS = [(25250, 25251), (25252, 25253), (25254, 25255)]

CONFIG = """
[smtp]
listen = ["127.0.0.1:{smtp}"]
hostname = "mx{n}.bench.test"
max_sessions = 200
max_sessions_per_ip = 200
max_messages_per_minute_per_ip = 0

[storage]
data_dir = "{data}"
{database}

[http]
listen = "127.0.0.1:{http}"
public_url = "http://127.0.0.1:{http}"

[auth]
enabled = false

[[domains]]
name = "bench.test"
endpoint = "fast"

[endpoints.fast]
url = "http://127.0.0.1:{fast}/hook"
secret = "{secret}"
"""


class Postgres:
    """A throwaway cluster: initdb in a temp dir, its own port, stopped and removed at the end."""

    def __init__(self, work):
        self.dir = tempfile.mkdtemp(prefix="pg-", dir=work)
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.run_as:
            shutil.chown(self.dir, "postgres")
            os.chmod(work, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.pg(["initdb", "-A", "trust", "-U", "mxhook", "-E", "UTF8", "--no-locale", "-D", self.data])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n")
            f.write("max_connections = 200\nshared_buffers = 128MB\n")
            # Which statements a message costs (calls and time per statement), reported with --statements.
            f.write("shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n")
        self.pg(["pg_ctl", "-w", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-o", f"-p {self.port}", "start"])

    def pg(self, argv):
        r = subprocess.run(self.run_as + [os.path.join(PG_BIN, argv[0])] + argv[1:], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]}: {r.stderr.strip()[:400]}")
        return r.stdout

    def url(self, db):
        return f"postgres://mxhook@127.0.0.1:{self.port}/{db}"

    def sql(self, db, query):
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-At", "-F", ",", "-d", self.url(db), "-c", query], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()[:400]}")
        return r.stdout.strip()

    def postmaster(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def cpu(self):
        """CPU seconds of the whole cluster so far: the postmaster, its live children, and the children
        it has reaped (cutime/cstime): backends that ended take their time with them otherwise."""
        pm = self.postmaster()
        total = cpu_secs(pm, children=True)
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != pm:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == pm:
                    total += cpu_secs(int(pid))
        return total

    def counters(self, db):
        """Cluster-wide WAL counters and this database's commits and size."""
        time.sleep(1.2)  # backends flush their statistics at most once a second
        row = self.sql(db, "SELECT pg_stat_clear_snapshot(); SELECT d.xact_commit, w.wal_records, w.wal_bytes, w.wal_sync, "
                       "pg_database_size(current_database()) FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()")
        commits, records, wal_bytes, syncs, size = (int(float(x)) for x in row.splitlines()[-1].split(","))
        return {"commits": commits, "wal_records": records, "wal_bytes": wal_bytes, "wal_syncs": syncs, "db_bytes": size}

    def stop(self):
        try:
            self.pg(["pg_ctl", "-w", "-D", self.data, "-m", "fast", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def cpu_secs(pid, children=False):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def run_setup(args, work, pg, setup, rep):
    """One measurement: fresh gateways (and a fresh database), the burst, until every webhook arrived."""
    backend, n_gw = setup.split("-")
    n_gw = int(n_gw)
    db = f"b{rep}_{backend}{n_gw}_{int(time.time() * 1000)}"
    if backend == "pg":
        pg.sql("postgres", f"CREATE DATABASE {db}")
    gws, dirs = [], []
    try:
        for i in range(n_gw):
            d = tempfile.mkdtemp(prefix=f"gw{i}-", dir=work)
            dirs.append(d)
            smtp, web = PORTS[i]
            database = f'database = "{pg.url(db)}"' if backend == "pg" else ""
            cfg = os.path.join(d, "gateway.toml")
            with open(cfg, "w") as f:
                f.write(CONFIG.format(n=i, smtp=smtp, http=web, data=os.path.join(d, "data"), database=database,
                                      fast=PORT_FAST, secret=SECRET))
            gws.append(Proc([MXHOOK, "--config", cfg, "serve"], os.path.join(d, "mxhook.log")))
            wait_port(smtp)
        before = pg.counters(db) if backend == "pg" else None
        if backend == "pg" and args.statements:
            pg.sql(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
        pg_cpu0 = pg.cpu() if backend == "pg" else 0.0
        gw_cpu0 = sum(cpu_secs(g.pid) for g in gws)
        http_post(PORT_FAST, "/_reset")
        per = args.count // n_gw
        sessions = max(1, args.sessions // n_gw)
        t0 = time.time()
        loads = []
        for i in range(n_gw):
            argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(per), "-l", str(args.size), "-f", "sender@src.test",
                    "-t", "x@bench.test", "-d", f"127.0.0.1:{PORTS[i][0]}"]
            loads.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        for p in loads:
            _, err = p.communicate(timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f"smtp-source failed: {err.strip()[:300]}")
        t1 = time.time()
        total = per * n_gw
        deadline = time.time() + 300
        s = stats(PORT_FAST)
        while s["count"] < total and time.time() < deadline:
            time.sleep(0.05)
            s = stats(PORT_FAST)
        if s["count"] < total:
            raise RuntimeError(f"{setup}: {s['count']} of {total} webhooks arrived")
        e2e = s["last_us"] / 1e6 - t0
        gw_cpu = sum(cpu_secs(g.pid) for g in gws) - gw_cpu0
        row = {"smtp_per_s": total / (t1 - t0), "e2e_per_s": total / e2e, "gateway_cpu_ms_per_msg": 1000 * gw_cpu / total}
        if backend == "pg":
            row["pg_cpu_ms_per_msg"] = 1000 * (pg.cpu() - pg_cpu0) / total
            after = pg.counters(db)
            for k in after:
                row[f"pg_{k}_per_msg"] = (after[k] - before[k]) / total
            if args.statements:
                top = pg.sql(db, "SELECT calls, round(total_exec_time::numeric + total_plan_time::numeric, 1), "
                             "replace(left(regexp_replace(query, '\\s+', ' ', 'g'), 110), ',', ';') FROM pg_stat_statements "
                             "ORDER BY total_exec_time + total_plan_time DESC LIMIT 25")
                row["statements"] = [
                    {"calls_per_msg": int(c) / total, "ms": float(ms), "query": q}
                    for c, ms, q in (line.split(",", 2) for line in top.splitlines() if line.count(",") >= 2)
                ]
                for st in row["statements"]:
                    log(f"     {st['calls_per_msg']:6.2f}/msg {st['ms']:9.1f} ms  {st['query']}")
        else:
            row["sqlite_bytes_per_msg"] = du(os.path.join(dirs[0], "data")) / total
        return row
    finally:
        for g in gws:
            g.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        if backend == "pg":
            try:
                pg.sql("postgres", f"DROP DATABASE IF EXISTS {db}")
            except RuntimeError as e:
                log("  drop:", e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--setups", default="sqlite-1,pg-1,pg-3")
    ap.add_argument("--statements", action="store_true", help="log PostgreSQL's statements per message (pg_stat_statements)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    for path in (MXHOOK, MXBENCH, SMTP_SOURCE):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: run bench/setup.sh")
    work = tempfile.mkdtemp(prefix="mxcluster-")
    result = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "reps": args.reps,
              "count": args.count, "size": args.size, "sessions": args.sessions, "runs": {}}
    receiver = Proc([MXBENCH, "receive", "--port", str(PORT_FAST)], os.path.join(work, "fast.log"))
    pg = None
    try:
        wait_port(PORT_FAST)
        pg = Postgres(work)
        setups = args.setups.split(",")
        for rep in range(args.reps):
            for setup in setups[rep % len(setups):] + setups[:rep % len(setups)]:
                row = run_setup(args, work, pg, setup, rep)
                result["runs"].setdefault(setup, []).append(row)
                log(f"  [{rep + 1}] {setup:8} smtp {row['smtp_per_s']:7.1f}/s  e2e {row['e2e_per_s']:7.1f}/s  "
                    f"gateways {row['gateway_cpu_ms_per_msg']:.2f} ms/msg  pg {row.get('pg_cpu_ms_per_msg', 0):.2f} ms/msg")
    finally:
        receiver.stop()
        if pg:
            pg.stop()
        result["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cluster-" + time.strftime("%Y%m%d-%H%M%S") + ".json")
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"results: {out}")
        shutil.rmtree(work, ignore_errors=True)
    print(report(result))


def report(result):
    keys = sorted({k for rows in result["runs"].values() for row in rows for k, v in row.items() if not isinstance(v, list)})
    setups = list(result["runs"])
    lines = ["| per message (median of %d) | %s |" % (result["reps"], " | ".join(setups)), "|---|" + "---:|" * len(setups)]
    for k in keys:
        cells = []
        for s in setups:
            m = median([row.get(k) for row in result["runs"][s]])
            cells.append("—" if m is None else (f"{m:,.0f}" if m >= 100 else f"{m:.2f}"))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
