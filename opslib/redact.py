"""Masking of secrets before anything reaches disk.

Two layers, both applied to every string opslib writes:

1. the *values* of secret-looking environment variables (``FLY_API_TOKEN``, ``DATABASE_URL``,
   ``SUPABASE_*KEY``, anything named like a token, password, secret or key), in the forms they
   take once embedded in JSON, HTML or a URL;
2. patterns for credentials whatever their origin: DSN passwords, JWTs, ``Bearer …``,
   ``FlyV1 …``, Fly ``fo1_``/``fm1a_``/``fm1r_``/``fm2_`` tokens, Supabase ``sbp_…`` and
   ``sb_secret_…`` keys, and ``Authorization``/``apikey``/cookie header values.

Scanners miss Bearer and Fly tokens (see reference/reliability-security.md §3), so the
patterns are ours and tested rather than delegated.
"""
from __future__ import annotations

import html
import json
import os
import re
from typing import Any, Iterable, Mapping
from urllib.parse import quote, unquote, urlsplit

MASK = "[REDACTED]"

# Environment variables whose values are secrets even if they do not match a pattern.
_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ANON_KEY|SERVICE_ROLE|PRIVATE|"
    r"CREDENTIAL|DATABASE_URL|DSN|_KEY$|^PG(PASSWORD|SERVICEFILE)$|COOKIE|SESSION|WEBHOOK)",
    re.I,
)
# Values shorter than this are not masked literally (masking "1" or "true" everywhere would
# destroy evidence); patterns still apply.
_MIN_LITERAL = 6

# (pattern, replacement). Order matters: headers and schemes before generic token shapes.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # header-like "Authorization: X" / "apikey": "X" / authorization=X (JSON, HTTP, logs)
    (re.compile(
        r"(?i)((?:\"|')?(?:authorization|proxy-authorization|apikey|api-key|x-api-key|"
        r"cookie|set-cookie|x-supabase-auth|fly-authorization)(?:\"|')?\s*[:=]\s*(?:\"|')?)"
        r"((?:bearer|flyv1|basic)\s+)?[^\"'\r\n]+"),
     r"\1\2" + MASK),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=:,-]{6,}"), r"\1\2" + MASK),
    (re.compile(r"\bFlyV1(\s+)[^\s\"'<>]+"), r"FlyV1\1" + MASK),
    # Fly tokens, also the second macaroon of a list URL-encoded after "%2C"
    (re.compile(r"(?:\b|(?<=%2[Cc]))(?:fo1|fm1[ar]|fm2)_[A-Za-z0-9_+/=-]{8,}"), MASK),
    (re.compile(r"\bsbp_(?:oauth_)?[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bsb_secret_[A-Za-z0-9_-]{8,}"), MASK),
    # JWT: header.payload.signature, header and payload are base64url JSON ("{" -> "ey")
    (re.compile(r"\bey[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), MASK),
    # URL userinfo password: scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@\"'<>]*:)([^\s@\"'<>/]+)(@)"),
     r"\1" + MASK + r"\3"),
    # keyword DSN with a quoted password (libpq: password='a b\'c')
    (re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)'(?:\\.|[^'\\])*'"),
     r"\1\2'" + MASK + "'"),
    # keyword DSN / query-string passwords: password=xyz
    (re.compile(r"(?i)\b(password|passwd|pwd|secret|token|apikey|api_key|access_token|"
                r"refresh_token)(\s*=\s*)(?!\[REDACTED\])([^\s&;\"'<>]+)"),
     r"\1\2" + MASK),
]


# quoted, or unquoted up to the next keyword (a space in an unquoted password leaves its
# tail as words without "=", which libpq then echoes)
_KEYWORD_PASSWORD = re.compile(
    r"(?i)\bpassword\s*=\s*(?:'((?:\\.|[^'\\])*)'|(\S+(?:\s+[^\s=]+(?=\s|$))*))")


def _variants(value: str) -> set[str]:
    """Forms a secret takes once embedded in JSON, HTML or a URL."""
    forms = {value, json.dumps(value)[1:-1], html.escape(value), quote(value, safe=""),
             quote(value)}
    if not value.isascii():
        # a non-ASCII secret in a body read with the wrong charset: its UTF-8 bytes as
        # Latin-1 / Windows-1252 text (what a server labelling UTF-8 as ISO-8859-1 gives)
        raw = value.encode("utf-8")
        forms |= {raw.decode("latin-1"), raw.decode("cp1252", errors="replace")}
    return {f for f in forms if len(f) >= _MIN_LITERAL}


def secret_values_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, plus DSN passwords inside them."""
    environ = os.environ if environ is None else environ
    values: set[str] = set()
    for name, value in environ.items():
        if not value or not _SECRET_NAME.search(name):
            continue
        values.add(value)
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                values.add(password)
                values.add(unquote(password))
        for m in _KEYWORD_PASSWORD.finditer(value):  # host=… password='a b' (libpq keywords)
            password = m.group(1).replace("\\'", "'") if m.group(1) is not None else m.group(2)
            values.add(password)
            # libpq echoes the part after a space in its error ("missing = after …")
            values.update(part for part in password.split() if part != password)
    return sorted(v for v in values if len(v) >= _MIN_LITERAL)


class Redactor:
    """Masks secrets in strings and in JSON-like structures.

    ``Redactor.from_env()`` is what every writer uses; ``extra`` adds literal values (tests,
    or secrets read from somewhere other than the environment).
    """

    def __init__(self, literals: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in literals:
            forms |= _variants(value)
        # Longest first, so a secret containing another secret is masked whole.
        self.literals = sorted(forms, key=len, reverse=True)
        self._literal_re = (
            re.compile("|".join(re.escape(v) for v in self.literals)) if self.literals else None
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 extra: Iterable[str] = ()) -> "Redactor":
        return cls([*secret_values_from_env(environ), *extra])

    def text(self, value: str) -> str:
        """Return ``value`` with every secret masked."""
        if self._literal_re is not None:
            value = self._literal_re.sub(MASK, value)
        for pattern, repl in _PATTERNS:
            value = pattern.sub(repl, value)
        return value

    def obj(self, value: Any) -> Any:
        """Redact every string (keys included) inside a JSON-like structure."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.obj(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value

    def headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Redact HTTP headers: credential headers are masked whole."""
        out: dict[str, str] = {}
        for name, value in headers:
            lname = name.lower()
            if lname in {"authorization", "proxy-authorization", "apikey", "x-api-key",
                         "cookie", "set-cookie", "fly-authorization"}:
                out[lname] = MASK
            else:
                out[lname] = self.text(value)
        return out

    def contains_secret(self, data: bytes) -> bool:
        """True when ``data`` holds a literal secret value (any embedded form)."""
        return any(v.encode() in data for v in self.literals)


def looks_secret(value: str) -> bool:
    """True when ``value`` matches one of the credential patterns (used to refuse parameters)."""
    return any(p.search(value) for p, _ in _PATTERNS[1:])


def excerpt(text: object, limit: int, redactor: "Redactor | None" = None) -> str:
    """At most ``limit`` characters of outside text, redacted *before* it is cut: cutting
    first would leave the head of a secret the redactor no longer recognises."""
    return (redactor or Redactor.from_env()).text(str(text))[:limit]
