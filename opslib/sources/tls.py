"""The TLS probe: what certificate a host serves, and whether a browser would accept it.

One probe of ``host:port`` connects (optionally to another address, with ``host`` as SNI),
handshakes with the standard library's default verification (system trust store, or
``SSL_CERT_FILE`` / ``cafile``), and, when that fails, handshakes again without verification
to read the certificate anyway. It then sends one ``GET`` over the TLS connection to see
what the host answers. The raw outcome (certificate DER, verification result, HTTP status) is
recorded with :meth:`Session.capture`, so a replay parses exactly what the live run saw; days
left are counted from ``session.now()``.

Nothing here raises for an unhealthy host: refused, timeout, a failed handshake or an
untrusted certificate are all data (:class:`TLSResult`).
"""
from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from ..session import Session
from ..times import iso

SYSTEM = "tls"
TLS_COLUMNS = ["host", "port", "error", "chain_verified", "verify_error", "hostname_match",
               "days_left", "not_after", "issuer", "subject", "sans", "self_signed",
               "tls_version", "http_status"]


@dataclass
class TLSResult:
    """What one TLS probe saw. ``error`` is None when a certificate was read."""

    host: str
    port: int
    error: str | None = None  # timeout | refused | dns | reset | handshake | network | bad_cert
    error_detail: str = ""
    subject: str = ""
    common_name: str = ""
    sans: list[str] = field(default_factory=list)
    issuer: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    days_left: float | None = None
    serial: str = ""
    sha256: str = ""
    self_signed: bool = False
    chain_verified: bool | None = None
    verify_error: str = ""
    verify_code: int | None = None
    hostname_match: bool | None = None
    tls_version: str = ""
    cipher: str = ""
    http_status: int | None = None
    http_error: str = ""
    elapsed_ms: float = 0.0

    @property
    def problems(self) -> list[str]:
        """Everything wrong with the served certificate, expiry first (a client's TLS error
        names only one of them)."""
        out = []
        if self.days_left is not None and self.days_left < 0:
            out.append(f"expired {abs(self.days_left):.0f} day(s) ago"
                       + (f" ({self.not_after:%Y-%m-%d})" if self.not_after else ""))
        if self.not_before is not None and self.not_after is not None and \
                self.days_left is not None:
            judged_at = self.not_after - timedelta(days=self.days_left)
            if self.not_before > judged_at:
                out.append(f"not valid before {self.not_before:%Y-%m-%d %H:%M} UTC")
        if self.self_signed:
            out.append("self-signed: not issued by a public CA")
        elif self.chain_verified is False and self.verify_error:
            out.append(f"untrusted: {self.verify_error}")
        if self.hostname_match is False:
            out.append(f"does not cover {self.host} (it covers "
                       f"{', '.join(self.sans) or self.common_name or 'no name'})")
        return out

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["sans"] = ", ".join(self.sans)
        d["not_after"] = iso(self.not_after) if self.not_after else None
        d["days_left"] = round(self.days_left, 1) if self.days_left is not None else None
        return {k: d[k] for k in TLS_COLUMNS}


# --------------------------------------------------------------------------- live handshake
def _connect_error(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, ssl.SSLError):
        return "handshake"
    return "network"


def _http_status(tls: ssl.SSLSocket, host: str, path: str) -> tuple[int | None, str]:
    """Send one GET over the TLS connection; the status code of the answer, or why none."""
    try:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: opslib-tls-probe\r\n"
                    "Connection: close\r\n\r\n".encode("ascii"))
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = tls.recv(1024)
            if not chunk:
                break
            head += chunk
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1]), ""
        return None, f"not an HTTP answer: {head[:40]!r}"
    except (OSError, ssl.SSLError) as exc:
        return None, f"{_connect_error(exc)}: {exc}"


def _handshake(host: str, port: int, connect_host: str, timeout: float,
               ctx: ssl.SSLContext, http_path: str | None) -> dict[str, Any]:
    with socket.create_connection((connect_host or host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            out: dict[str, Any] = {
                "der_b64": base64.b64encode(tls.getpeercert(binary_form=True) or b"").decode(),
                "tls_version": tls.version() or "", "cipher": (tls.cipher() or ("",))[0]}
            if http_path is not None:
                out["http_status"], out["http_error"] = _http_status(tls, host, http_path)
            return out


def fetch(host: str, port: int = 443, *, connect_host: str = "", timeout: float = 5.0,
          cafile: str | None = None, http_path: str | None = "/") -> dict[str, Any]:
    """Handshake with ``host:port`` for real; a JSON-able record of what happened (never raises).

    The first handshake verifies the chain (not the name: that is judged from the
    certificate itself, so a name mismatch and a bad chain are told apart); if it fails the
    certificate is read with a second, unverified handshake.
    """
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"host": host, "port": port, "connect": connect_host or host,
                           "error": None, "error_detail": "", "verified": None,
                           "verify_error": "", "verify_code": None}
    verify_ctx = ssl.create_default_context(cafile=cafile)
    verify_ctx.check_hostname = False  # judged separately from the SANs
    try:
        rec.update(_handshake(host, port, connect_host, timeout, verify_ctx, http_path))
        rec["verified"] = True
    except ssl.SSLCertVerificationError as exc:
        rec["verified"] = False
        rec["verify_error"] = str(exc.verify_message or exc.reason or exc)
        rec["verify_code"] = exc.verify_code
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # only to read the certificate a browser rejects
        try:
            rec.update(_handshake(host, port, connect_host, timeout, insecure, http_path))
        except (OSError, ssl.SSLError) as exc2:
            rec["error"], rec["error_detail"] = _connect_error(exc2), str(exc2)
    except (OSError, ssl.SSLError) as exc:
        rec["error"], rec["error_detail"] = _connect_error(exc), str(exc)
    rec["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return rec


# --------------------------------------------------------------------------- parsing (pure)
def hostname_matches(host: str, names: list[str]) -> bool:
    """RFC 6125 matching of ``host`` against SAN entries: a wildcard covers one left label."""
    host = host.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for name in names:
        name = name.rstrip(".").lower()
        if ip is not None:
            try:
                if ipaddress.ip_address(name) == ip:
                    return True
            except ValueError:
                pass
            continue
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == name[2:] and "." in rest:
                return True
    return False


def _name(name: x509.Name) -> str:
    return name.rfc4514_string()


def parse(record: dict[str, Any], now: datetime) -> TLSResult:
    """Turn a recorded handshake into a :class:`TLSResult` judged at ``now``."""
    res = TLSResult(host=str(record.get("host", "")), port=int(record.get("port") or 0),
                    error=record.get("error"), error_detail=str(record.get("error_detail", "")),
                    chain_verified=record.get("verified"),
                    verify_error=str(record.get("verify_error", "")),
                    verify_code=record.get("verify_code"),
                    tls_version=str(record.get("tls_version", "")),
                    cipher=str(record.get("cipher", "")),
                    http_status=record.get("http_status"),
                    http_error=str(record.get("http_error", "")),
                    elapsed_ms=float(record.get("elapsed_ms") or 0.0))
    der_b64 = record.get("der_b64") or ""
    if res.error or not der_b64:
        if not res.error:
            res.error, res.error_detail = "bad_cert", "the server sent no certificate"
        return res
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(der_b64))
    except ValueError as exc:
        res.error, res.error_detail = "bad_cert", f"certificate could not be parsed: {exc}"
        return res
    res.subject, res.issuer = _name(cert.subject), _name(cert.issuer)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    res.common_name = str(cns[0].value) if cns else ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        res.sans = ([str(n) for n in san.get_values_for_type(x509.DNSName)] +
                    [str(ip) for ip in san.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        res.sans = []
    res.not_before, res.not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    res.days_left = (res.not_after - now).total_seconds() / 86400
    res.serial = format(cert.serial_number, "x")
    res.sha256 = cert.fingerprint(hashes.SHA256()).hex()
    res.self_signed = cert.issuer == cert.subject
    # Browsers ignore the CN once SANs exist; without SANs, fall back to the CN.
    res.hostname_match = hostname_matches(res.host, res.sans or [res.common_name])
    return res


def probe_tls(session: Session, host: str, port: int = 443, *, connect_host: str = "",
              timeout: float = 5.0, cafile: str | None = None,
              http_path: str | None = "/") -> TLSResult:
    """Probe ``host:port`` through the session (recorded live, answered from the capture on
    replay) and judge the certificate at the session's reference time."""
    record = session.capture(
        "tls", SYSTEM, f"{host}:{port}",
        lambda: fetch(host, port, connect_host=connect_host, timeout=timeout, cafile=cafile,
                      http_path=http_path),
        op="tls_handshake", target=f"{host}:{port}", payload={"host": host, "port": port})
    return parse(record, session.now())


def tls_frame(results: list[TLSResult]) -> pd.DataFrame:
    """One row per probe (columns: TLS_COLUMNS)."""
    return pd.DataFrame([r.row() for r in results], columns=TLS_COLUMNS)
