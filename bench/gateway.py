"""What bench/same_events.py and bench/instructions.py share: free ports, a webhook receiver that
keeps every body, and a gateway config for one endpoint with [auth] off."""
import http.server
import os
import socket
import threading
import time

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


class Receiver:
    """An HTTP/1.1 keep-alive endpoint on a free port: answers 200, keeps each body in order."""

    def __init__(self):
        self.bodies, self.arrived = [], threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                with outer.arrived:
                    outer.bodies.append(body)
                    outer.arrived.notify_all()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, timeout):
        """True once `n` bodies have arrived, False after `timeout` seconds."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.bodies) >= n, timeout=timeout)

    def close(self):
        self.server.shutdown()


def write_config(d, smtp, web, receiver):
    """gateway.toml in `d`: SMTP and HTTP on the given ports, data in d/data, mail for example.test
    to `receiver`, no per-IP limits, no sender authentication (no DNS)."""
    path = os.path.join(d, "gateway.toml")
    with open(path, "w") as f:
        f.write(f"""[smtp]
listen = ["127.0.0.1:{smtp}"]
hostname = "mx.example.test"
max_messages_per_minute_per_ip = 0
max_sessions_per_ip = 200
[storage]
data_dir = "{d}/data"
[http]
listen = "127.0.0.1:{web}"
public_url = "http://127.0.0.1:8025"
[auth]
enabled = false
[[domains]]
name = "example.test"
endpoint = "app"
[endpoints.app]
url = "http://127.0.0.1:{receiver.port}/hook"
secret = "{SECRET}"
""")
    return path
