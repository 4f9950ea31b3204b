"""HTTP plumbing shared by every API source, and the application probe.

``call`` is the one place where HTTP failures become opslib errors: bounded retries with
backoff for idempotent reads only (429 honours ``Retry-After``; 5xx and connection resets
are retried a few times), and every outcome turns into a response or a typed
:class:`~opslib.errors.SourceError` — never a hang (the session's clients always carry
timeouts), never a raw traceback.

``probe`` measures the application: it never retries and never raises for a failed request;
an unhealthy app is data.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from ..errors import (SourceAuthError, SourceError, SourceNotFound, SourceProtocolError,
                      SourceRateLimited, SourceUnavailable)
from ..redact import excerpt
from ..session import Session

RETRY_STATUSES = {500, 502, 503, 504}
MAX_RETRY_AFTER_S = 10.0


def transport_kind(exc: BaseException) -> str:
    """Classify a transport failure: timeout, dns, refused, tls, reset or network."""
    text = str(exc).lower()
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if any(s in text for s in ("certificate", "ssl", "tls", "handshake")):
        return "tls"
    if any(s in text for s in ("name or service not known", "nodename nor servname",
                               "temporary failure in name resolution", "no address associated",
                               "name resolution", "getaddrinfo")):
        return "dns"
    if "refused" in text:
        return "refused"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) or "reset" in text:
        return "reset"
    return "network"


_KIND_HINT = {
    "timeout": "the server did not answer within the timeout; check it is up and reachable",
    "dns": "the host name does not resolve; check the URL / app name",
    "refused": "nothing is listening there; check the URL and port",
    "tls": "the TLS handshake failed; run the tls runbook",
    "reset": "the connection was cut mid-answer; retry, then check the server",
    "network": "the network call failed; check connectivity",
}


def _error_message(response: httpx.Response) -> str:
    """The platform's own error text: Fly ``{"error"}``, Supabase ``{"message"}``, GoTrue ``{"msg"}``."""
    try:
        body = response.json()
    except ValueError:
        return excerpt(response.text, 200).strip()
    if isinstance(body, dict):
        for key in ("error", "message", "msg", "error_description"):
            if isinstance(body.get(key), str):
                return body[key]
        if isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            return first.get("message", str(first)) if isinstance(first, dict) else str(first)
    return excerpt(response.text, 200).strip()


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return default


def call(
    session: Session,
    client: httpx.Client,
    method: str,
    url: str,
    *,
    system: str,
    op: str,
    idempotent: bool | None = None,
    retries: int = 2,
    backoff: float = 0.25,
    ok_statuses: tuple[int, ...] = (),
    **kwargs: Any,
) -> httpx.Response:
    """Make one API call with the failure policy above; return a 2xx (or ``ok_statuses``) response.

    Raises:
        SourceAuthError (401/403), SourceNotFound (404), SourceRateLimited (429 after retries),
        SourceUnavailable (timeout, network, 5xx after retries), SourceError (other 4xx).
    """
    if idempotent is None:
        idempotent = method.upper() in ("GET", "HEAD", "OPTIONS")
    attempts = 1 + (retries if idempotent else 0)
    target = str(client.base_url.join(url)) if client.base_url else url
    delay = backoff
    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        try:
            response = client.request(method, url, extensions={"opslib_op": op}, **kwargs)
        except httpx.TransportError as exc:
            kind = transport_kind(exc)
            if not last and kind in ("reset", "network"):
                _sleep(session, delay)
                delay *= 2
                continue
            raise SourceUnavailable(f"{system}: {op} failed: {kind} ({exc})", system=system,
                                    target=target, kind=kind, hint=_KIND_HINT[kind]) from exc
        status = response.status_code
        if 200 <= status < 300 or status in ok_statuses:
            return response
        if status == 429 and not last:
            _sleep(session, _retry_after(response, delay))
            delay *= 2
            continue
        if status in RETRY_STATUSES and not last:
            _sleep(session, delay)
            delay *= 2
            continue
        message = _error_message(response)
        text = f"{system}: {op} returned HTTP {status}: {message}"
        if status in (401, 403):
            raise SourceAuthError(text, system=system, target=target, status=status,
                                  hint="check the token's value and its permissions for this app")
        if status == 404:
            raise SourceNotFound(text, system=system, target=target, status=status,
                                 hint="check the app / project name")
        if status == 429:
            raise SourceRateLimited(text, system=system, target=target, status=status,
                                    hint="rate limited; wait and run again")
        if status >= 500:
            raise SourceUnavailable(text, system=system, target=target, status=status,
                                    kind="server_error", hint="the platform is failing; "
                                    "check its status page")
        raise SourceError(text, system=system, target=target, status=status)
    raise AssertionError("unreachable")  # pragma: no cover


def call_json(session: Session, client: httpx.Client, method: str, url: str, *, system: str,
              op: str, **kwargs: Any) -> Any:
    """``call`` and decode JSON; a body that is not JSON is a SourceProtocolError."""
    response = call(session, client, method, url, system=system, op=op, **kwargs)
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceProtocolError(
            f"{system}: {op} answered with invalid JSON ({exc}): {excerpt(response.text, 120)!r}",
            system=system, target=str(response.request.url), status=response.status_code,
            hint="the endpoint is not the API expected here; check the base URL") from exc


def _sleep(session: Session, seconds: float) -> None:
    if session.mode != "replay":  # a replay re-reads recorded attempts instantly
        time.sleep(seconds)


# --------------------------------------------------------------------------- probe
@dataclass
class ProbeResult:
    """One request to the application. ``error`` is None when an HTTP answer came back."""

    url: str
    status: int | None
    latency_ms: float
    error: str | None = None  # timeout | dns | refused | tls | reset | network
    error_detail: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    # our clock when the request was sent and the answer came back (the time of this
    # measurement: a skew is judged against it, not against the run's start)
    sent_at: datetime | None = None
    received_at: datetime | None = None

    @property
    def measured_at(self) -> datetime | None:
        """The middle of the exchange, or None when the times were not recorded."""
        if self.sent_at is None or self.received_at is None:
            return None
        return self.sent_at + (self.received_at - self.sent_at) / 2

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def probe(session: Session, url: str, *, timeout: float = 5.0, source: str = "app",
          client: httpx.Client | None = None) -> ProbeResult:
    """GET ``url`` once with a timeout; every failure becomes a ProbeResult, never an exception."""
    client = client or session.client(source, timeout=httpx.Timeout(timeout, connect=timeout))
    sent = session.clock(f"{source}-probe:sent")
    t0 = time.perf_counter()
    try:
        response = client.get(url, extensions={"opslib_op": "probe"})
    except httpx.TransportError as exc:
        elapsed = getattr(exc, "elapsed_ms", (time.perf_counter() - t0) * 1000)
        return ProbeResult(url, None, round(elapsed, 1), transport_kind(exc), str(exc),
                           sent_at=sent, received_at=session.clock(f"{source}-probe:received"))
    received = session.clock(f"{source}-probe:received")
    elapsed = float(response.extensions.get("elapsed_ms", (time.perf_counter() - t0) * 1000))
    return ProbeResult(url, response.status_code, round(elapsed, 1), None, "",
                       dict(response.headers), excerpt(response.text, 65536), sent, received)


def probe_many(session: Session, url: str, n: int, *, timeout: float = 5.0) -> list[ProbeResult]:
    """``n`` GETs of ``url``, one after another (they measure the app, not us)."""
    if n <= 0:
        return []
    client = session.client("app", timeout=httpx.Timeout(timeout, connect=timeout))
    return [probe(session, url, timeout=timeout, client=client) for _ in range(n)]
