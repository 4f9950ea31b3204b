"""Real TLS servers on 127.0.0.1 with trustme certificates: valid, expired, wrong name,
untrusted CA, self-signed. Each answers any HTTP request with ``200 OK``."""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

UTC = dt.timezone.utc


class LocalTLSServer:
    """Accepts TLS connections with the given certificate chain and answers ``200 OK``.

    ``sni`` serves other chains by the name the client asks for (like Fly's proxy does).
    """

    def __init__(self, cert_pem: bytes, key_pem: bytes, *,
                 sni: dict[str, tuple[bytes, bytes]] | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="opslib-tls-")
        self.ctx = self._context(cert_pem, key_pem, "default")
        by_name = {name: self._context(c, k, name) for name, (c, k) in (sni or {}).items()}
        self.served_names: list[str | None] = []

        def pick(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.served_names.append(name)
            if name in by_name:
                sock.context = by_name[name]

        self.ctx.sni_callback = pick
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self.latency = 0.0  # seconds before each handshake (benchmarks inject 50 ms)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _context(self, cert_pem: bytes, key_pem: bytes, label: str) -> ssl.SSLContext:
        cert_file = Path(self._dir.name) / f"{label}-chain.pem"
        key_file = Path(self._dir.name) / f"{label}-key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_file), str(key_file))
        return ctx

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        if self.latency:
            time.sleep(self.latency)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                            b"content-length: 15\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}")
        except (OSError, ssl.SSLError):
            pass  # the client refused our certificate: that is what the test is about
        finally:
            conn.close()

    def __enter__(self) -> "LocalTLSServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
        self._dir.cleanup()


def leaf(ca: trustme.CA, *names: str, days_left: float = 90,
         valid_days: float = 90) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a leaf for ``names`` issued by ``ca``, expiring in ``days_left``."""
    now = dt.datetime.now(UTC)
    not_after = now + dt.timedelta(days=days_left)
    cert = ca.issue_cert(*names, not_before=not_after - dt.timedelta(days=valid_days),
                         not_after=not_after)
    return b"".join(b.bytes() for b in cert.cert_chain_pems), cert.private_key_pem.bytes()


def self_signed(name: str, days_left: float = 90) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``name`` (issuer == subject, no CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=min(days_left, 0) - 90))
            .not_valid_after(now + dt.timedelta(days=days_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ca_file(ca: trustme.CA, folder: Path) -> str:
    path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)
