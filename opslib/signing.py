"""Signed and chained evidence: who vouches for a run, and that no run of an incident was
removed or rewritten since.

A SHA-256 manifest detects corruption, not tampering: whoever can edit ``findings.json`` can
recompute the manifest. So each manifest also

* records, under ``chain.previous``, the SHA-256 of the incident's previous run's manifest
  file (``null`` for the first run), so removing, reordering or rewriting a run breaks the
  chain at the next one; and
* is **signed** (Ed25519, ``cryptography``) when ``OPSLIB_SIGNING_KEY`` holds an Ed25519
  private key (PEM, or the 32-byte seed in base64). The key stays in the environment; the
  evidence holds only the public key, its id and the signature over the manifest's canonical
  JSON (without the ``signature`` member).

``verify`` then says per run: ``signed by <key id>`` (``trusted`` when the key is in
``OPSLIB_TRUSTED_KEYS``: public keys in base64, comma-separated), ``integrity only``
(unsigned), or names what broke. A forger who rewrites a run and re-signs it must use a key
of their own: its id differs, and with trusted keys configured it fails.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import UsageError

KEY_ENV = "OPSLIB_SIGNING_KEY"
TRUSTED_ENV = "OPSLIB_TRUSTED_KEYS"


def canonical(manifest: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without ``signature``, keys sorted."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _private_key(text: str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"${KEY_ENV} is not an Ed25519 private key ({exc})",
                         hint="a PEM private key, or the 32-byte seed in base64 "
                              "(python -m opslib keygen makes one)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"${KEY_ENV} holds a key that is not Ed25519",
                         hint="sign with an Ed25519 key")
    return key


def signing_key(environ: Any = None) -> Any | None:
    """The operator's key from the environment, or None (the run is integrity-only)."""
    value = (environ if environ is not None else os.environ).get(KEY_ENV, "")
    return _private_key(value) if value.strip() else None


def _raw_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def sign(manifest: dict[str, Any], key: Any) -> dict[str, Any]:
    """``manifest`` with its ``signature`` member."""
    public = _raw_public(key)
    signature = key.sign(canonical(manifest))
    return {**manifest, "signature": {"algorithm": "ed25519", "key_id": key_id(public),
                                      "public_key": base64.b64encode(public).decode(),
                                      "value": base64.b64encode(signature).decode()}}


def trusted_keys(environ: Any = None) -> set[str]:
    """Key ids of ``OPSLIB_TRUSTED_KEYS`` (base64 public keys, comma-separated)."""
    value = (environ if environ is not None else os.environ).get(TRUSTED_ENV, "")
    out = set()
    for item in value.split(","):
        item = item.strip()
        if item:
            try:
                out.add(key_id(base64.b64decode(item, validate=True)))
            except ValueError:
                raise UsageError(f"${TRUSTED_ENV} holds {item[:12]}…, not a base64 public key",
                                 hint="give the public_key values of manifests you trust") from None
    return out


def check_signature(manifest: dict[str, Any]) -> tuple[str, str]:
    """``(level, detail)``: ``signed`` (detail: key id), ``integrity only`` (no signature),
    or ``bad signature`` (detail: why)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig = manifest.get("signature")
    if sig is None:
        return "integrity only", ""
    try:
        public = base64.b64decode(sig["public_key"], validate=True)
        value = base64.b64decode(sig["value"], validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(value, canonical(manifest))
    except InvalidSignature:
        return "bad signature", "the manifest was changed after it was signed"
    except (KeyError, TypeError, ValueError) as exc:
        return "bad signature", f"unreadable signature ({exc})"
    if sig.get("key_id") != key_id(public):
        return "bad signature", "key id does not match the public key"
    return "signed", key_id(public)


def manifest_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def previous_manifest(incident_dir: Path) -> Path | None:
    """The manifest written last in ``incident_dir`` (the chain's current end)."""
    if not incident_dir.is_dir():
        return None
    manifests = [p / "EVIDENCE_MANIFEST.json" for p in incident_dir.iterdir()
                 if p.is_dir() and not p.name.startswith((".", "_"))
                 and (p / "EVIDENCE_MANIFEST.json").is_file()]
    return max(manifests, key=lambda m: (m.stat().st_mtime_ns, str(m)), default=None)


def check_chain(runs: list[Path]) -> dict[Path, str]:
    """Problems of an incident's chain, per run: a ``previous`` that is no run's manifest
    (a run removed or rewritten after it), two runs claiming the same previous (a fork), or
    more than one start. Runs written before chaining (no ``chain``) are left out."""
    digests, previous = {}, {}
    for run in runs:
        path = run / "EVIDENCE_MANIFEST.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or not isinstance(manifest.get("chain"), dict):
            continue
        digests[manifest_digest(path)] = run
        previous[run] = manifest["chain"].get("previous")
    problems: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    starts = [r for r, p in previous.items() if p is None]
    for run, prev in previous.items():
        if prev is None:
            if len(starts) > 1:
                problems[run] = f"chain broken: {len(starts)} runs claim to be the first"
        elif prev not in digests:
            problems[run] = ("chain broken: the run before this one was removed or rewritten "
                             f"(no manifest has digest {str(prev)[:16]}…)")
        elif prev in seen:
            problems[run] = f"chain forked: {seen[prev].name} follows the same run"
        else:
            seen[prev] = run
    return problems


def generate() -> tuple[str, str]:
    """A new key pair: (private seed in base64 for OPSLIB_SIGNING_KEY, public key in base64
    for OPSLIB_TRUSTED_KEYS)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    return base64.b64encode(seed).decode(), base64.b64encode(_raw_public(key)).decode()
