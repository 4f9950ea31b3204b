"""A small HTTP fault proxy on 127.0.0.1, in the spirit of Toxiproxy's toxics.

It forwards each request to an upstream (a stand-in or any local server) and can, per
matching request: delay the answer past a client's timeout, cut the connection with a TCP
reset halfway through the body, close it early (a truncated body), or answer by itself (a
status with the platform's error body, ``Retry-After``, a body that is not JSON). A global
``latency`` is added to every request (the benchmarks' 50 ms).

Each answer closes the client connection, so every request is a fresh exchange the rules can
act on; rules are consumed in order (``times`` each).
"""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

FAULTS = ("delay", "reset_mid_body", "truncate_body", "respond")


@dataclass
class Rule:
    fault: str
    path: str = ".*"  # regex on the request target (path and query)
    method: str = ""
    times: int = 1  # how many matching requests this rule acts on (0: forever)
    seconds: float = 0.0  # delay
    status: int = 200  # respond
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    used: int = 0


class FaultProxy:
    def __init__(self, upstream: str, *, latency: float = 0.0) -> None:
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.latency = latency
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def add(self, fault: str, **kwargs: Any) -> "FaultProxy":
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        with self._lock:
            self.rules.append(Rule(fault, **kwargs))
        return self

    def _match(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.times and rule.used >= rule.times:
                    continue
                if rule.method and rule.method != method:
                    continue
                if re.search(rule.path, target):
                    rule.used += 1
                    return rule
        return None

    # ------------------------------------------------------------------ serving
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def _forward(self, request: bytes) -> bytes:
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n")
                 if not ln.lower().startswith((b"connection:", b"keep-alive:"))]
        lines.append(b"Connection: close")
        with socket.create_connection(self.upstream, timeout=30) as up:
            up.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            chunks = []
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _close_header(response: bytes) -> tuple[bytes, bytes]:
        head, _, body = response.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        lines.append(b"connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n", body

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = self._read_request(conn)
            if request is None:
                return
            method, target = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            with self._lock:
                self.seen.append((method, target))
            if self.latency:
                time.sleep(self.latency)
            rule = self._match(method, target)
            if rule is not None and rule.fault == "respond":
                head, body = _build(rule.status, rule.body, rule.headers)
                conn.sendall(head + body)
                return
            head, body = self._close_header(self._forward(request))
            if rule is None:
                conn.sendall(head + body)
            elif rule.fault == "delay":
                time.sleep(rule.seconds)
                conn.sendall(head + body)
            elif rule.fault == "truncate_body":
                conn.sendall(head + body[: len(body) // 2])  # then FIN: fewer bytes than promised
            elif rule.fault == "reset_mid_body":
                conn.sendall(head + body[: len(body) // 2])
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()


def _build(status: int, body: Any, headers: dict[str, str]) -> tuple[bytes, bytes]:
    ctype = "text/plain"
    if isinstance(body, (dict, list)):
        body, ctype = json.dumps(body).encode(), "application/json"
    elif isinstance(body, str):
        body = body.encode()
    hdrs = {"content-type": ctype, **headers, "content-length": str(len(body)),
            "connection": "close"}
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1"), body
