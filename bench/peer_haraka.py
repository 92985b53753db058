#!/usr/bin/env python3
"""The strongest self-hosted peer: Haraka (Node.js) with a queue plugin that parses the message with
mailparser and POSTs a JSON event, answering 250 only after the endpoint answered 2xx
(bench/haraka/plugins/queue/webhook.js). Installed by bench/setup.sh (`npm ci` in bench/haraka).

Each instance runs from a fresh copy of bench/haraka/config in a temporary directory, with `listen`,
`nodes` and the webhook URL written in, and bench/haraka/plugins and node_modules linked in, so a run
never writes into the repository. Haraka runs in its own session: stop() ends the master and its
cluster workers together.

usage: peer_haraka.py SMTP_PORT WEBHOOK_URL [NODES]      (NODES: a number or "cpus", default 1; Ctrl-C stops it)
"""
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HARAKA_DIR = os.path.join(HERE, "haraka")
HARAKA_BIN = os.path.join(HARAKA_DIR, "node_modules", "Haraka", "bin", "haraka")
NODE = shutil.which("node") or shutil.which("nodejs") or "node"
# Extra flags for node (e.g. ["--cpu-prof"] to profile; cluster workers inherit them).
NODE_ARGS = []


def installed():
    return os.path.exists(HARAKA_BIN) and shutil.which(NODE) is not None


def version():
    try:
        with open(os.path.join(HARAKA_DIR, "node_modules", "Haraka", "package.json")) as f:
            return re.search(r'"version"\s*:\s*"([^"]+)"', f.read()).group(1)
    except (OSError, AttributeError):
        return None


class Haraka:
    def __init__(self, port, url, nodes="1", work=None, timeout=60.0):
        self.port = port
        self.nodes = str(nodes)
        self.dir = tempfile.mkdtemp(prefix="haraka-", dir=work)
        cfg = os.path.join(self.dir, "config")
        shutil.copytree(os.path.join(HARAKA_DIR, "config"), cfg)
        with open(os.path.join(cfg, "smtp.ini"), "w") as f:
            f.write(f"listen=127.0.0.1:{port}\nnodes={self.nodes}\n")
        with open(os.path.join(cfg, "webhook.ini"), "w") as f:
            f.write(f"[main]\nurl={url}\ntimeout=10\n")
        for name in ("plugins", "node_modules"):
            os.symlink(os.path.join(HARAKA_DIR, name), os.path.join(self.dir, name))
        self.log_path = os.path.join(self.dir, "haraka.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(
            [NODE, *NODE_ARGS, HARAKA_BIN, "-c", self.dir], stdout=self.log, stderr=self.log, start_new_session=True
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self):
        return self.p.pid

    def workers(self):
        """How many cluster workers said they listen (the master listens once the first one does)."""
        with open(self.log_path, "rb") as f:
            return len(re.findall(rb"worker \d+ listening on", f.read()))

    def _wait_ready(self, timeout):
        """Until every worker listens and a test message to the bench's domain gets its 250 (the POST
        went through): a measurement never starts against a Haraka still loading its plugins."""
        want = os.cpu_count() if self.nodes == "cpus" else int(self.nodes)
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"haraka exited ({self.p.returncode}); see {self.log_path}:\n{self.tail()}")
            if self.workers() >= want:
                try:
                    with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                        s.sendmail("probe@src.test", ["probe@bench.test"], b"Subject: probe\r\n\r\nprobe\r\n")
                    return
                except (OSError, smtplib.SMTPException) as e:
                    last = e
            time.sleep(0.1)
        raise RuntimeError(f"haraka did not answer on {self.port} within {timeout}s ({last}):\n{self.tail()}")

    def tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def pids(self):
        """The master and its workers: every process in Haraka's session."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[3]) == self.p.pid:  # session id
                        out.append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        return out

    def stop(self):
        """SIGINT to the master (Haraka's own shutdown: it exits, and each worker exits when its channel
        to the master closes, writing a --cpu-prof profile if asked), then SIGTERM and SIGKILL to the
        whole process group (master and workers) for whatever is left."""
        for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                if sig == signal.SIGINT:
                    os.kill(self.p.pid, sig)
                else:
                    os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                if sig == signal.SIGINT:
                    continue
                break
            deadline = time.time() + wait
            while time.time() < deadline and self.pids():
                if self.p.poll() is None:
                    try:
                        self.p.wait(0.1)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.1)
            if not self.pids():
                break
        if self.p.poll() is None:
            self.p.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def interrupted(*_):
    raise KeyboardInterrupt


def main():
    port, url = int(sys.argv[1]), sys.argv[2]
    nodes = sys.argv[3] if len(sys.argv) > 3 else "1"
    # Stop cleanly on SIGTERM too (a background job ignores SIGINT).
    signal.signal(signal.SIGTERM, interrupted)
    h = Haraka(port, url, nodes)
    print(f"peer: Haraka {version()} (nodes={nodes}) on 127.0.0.1:{port} -> {url}; log {h.log_path}", file=sys.stderr, flush=True)
    try:
        while h.p.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        h.stop()


if __name__ == "__main__":
    main()
