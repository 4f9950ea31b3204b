"""Deterministic X.509 certificates for the demo TLS captures.

Ed25519 signatures are deterministic, so with fixed keys (derived from a name), serials and
dates the same certificate comes out byte for byte every time: the demo captures can be
regenerated and diffed. These certificates are for the demo only; they chain to a made-up
"Demo Encrypt R3" issuer that nothing trusts.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

ISSUER = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Demo Encrypt"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Demo Encrypt R3")])


def _key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def leaf_der(names: list[str], *, not_after: datetime, valid_days: int = 90) -> bytes:
    """A leaf for ``names`` (the first is the CN) issued by the demo CA."""
    cn = names[0]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ISSUER)
            .public_key(_key(f"leaf:{cn}").public_key())
            .serial_number(int.from_bytes(hashlib.sha256(f"{cn}{not_after}".encode()).digest()[:8], "big"))
            .not_valid_before(not_after - timedelta(days=valid_days))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(_key("demo-ca"), None))
    return cert.public_bytes(Encoding.DER)


def handshake(host: str, names: list[str], *, not_after: datetime, verified: bool = True,
              verify_error: str = "", verify_code: int | None = None,
              http_status: int | None = 200, elapsed_ms: float = 48.0) -> dict:
    """A recorded TLS handshake (the shape :func:`opslib.sources.tls.fetch` returns)."""
    return {"host": host, "port": 443, "connect": host, "error": None, "error_detail": "",
            "verified": verified, "verify_error": verify_error, "verify_code": verify_code,
            "der_b64": base64.b64encode(leaf_der(names, not_after=not_after)).decode(),
            "tls_version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256",
            "http_status": http_status, "http_error": "", "elapsed_ms": elapsed_ms}


def failed_handshake(host: str, kind: str, detail: str, elapsed_ms: float = 31.0) -> dict:
    return {"host": host, "port": 443, "connect": host, "error": kind, "error_detail": detail,
            "verified": None, "verify_error": "", "verify_code": None,
            "elapsed_ms": elapsed_ms}
