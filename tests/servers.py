"""Real local servers for the tests: HTTP on 127.0.0.1, and PostgreSQL 15 as an unprivileged user."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (past a client timeout = a hang)


Handler = Callable[[Request], Reply]


class LocalHTTPServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that answers with ``handler`` and logs requests.

    ``latency`` (seconds, settable at any time) delays every answer, as a real server over the
    network does: stand-ins built on this answer no faster than the systems they stand for.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.latency: float = getattr(self, "latency", 0.0)
        self.requests: list[Request] = []
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length) if length else b"")
                outer.requests.append(req)
                reply = outer.handler(req)
                if reply.delay or outer.latency:
                    time.sleep(reply.delay + outer.latency)
                body = reply.body
                ctype = "text/plain"
                if isinstance(body, (dict, list)):
                    body, ctype = json.dumps(body).encode(), "application/json"
                elif isinstance(body, str):
                    body = body.encode()
                try:
                    self.send_response(reply.status)
                    headers = {"content-type": ctype, **reply.headers}
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHTTPServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class PostgresServer:
    """A real PostgreSQL 15 cluster in a temp folder, run as an unprivileged user.

    ``pg_ctl`` refuses to run as root, so as root the cluster belongs to the ``postgres``
    user. TCP on 127.0.0.1 with SCRAM passwords (so DSNs carry a password, as in production).
    """

    def __init__(self, *, max_connections: int = 20, password: str = "pg-test-S3cret-pw") -> None:
        self.password = password
        self.max_connections = max_connections
        self.port = free_port()
        self.base = tempfile.mkdtemp(prefix="opslib-pg-")
        self.data = os.path.join(self.base, "data")
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        os.chmod(self.base, 0o755)

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {}
        if os.geteuid() == 0:
            kwargs = {"user": "postgres", "group": "postgres", "extra_groups": []}
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120,
                              cwd=self.base, env={"PATH": os.environ.get("PATH", ""),
                                                  "LC_ALL": "C.UTF-8"}, **kwargs)

    def start(self) -> "PostgresServer":
        pwfile = os.path.join(self.base, "pw")
        with open(pwfile, "w") as fh:
            fh.write(self.password + "\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        os.unlink(pwfile)
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                f"-c max_connections={self.max_connections} -c superuser_reserved_connections=3 "
                "-c fsync=off -c shared_buffers=16MB")
        self._run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-o", opts, "-l",
                  os.path.join(self.base, "log"), "-w", "-t", "60", "start")
        return self

    def dsn(self, user: str = "postgres", password: str | None = None, db: str = "postgres") -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self._run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)
