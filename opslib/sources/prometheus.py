"""Prometheus HTTP API client: Fly's managed endpoint or any Prometheus-compatible server.

Fly's endpoint is ``https://api.fly.io/prometheus/<org-slug>`` (reference §3) and takes the
same ``Authorization`` as the Machines API (``Bearer`` / ``FlyV1``, from ``FLY_API_TOKEN``).
``FLY_PROMETHEUS_URL`` points at any other server (a token is then sent only if one is set).

Results are tidy DataFrames (:class:`QueryResult`): ``timestamp`` (UTC), one column per label,
``value`` (float; ``NaN``/``±Inf`` kept as such). The Prometheus error envelope
``{"status": "error", "errorType", "error"}`` becomes a :class:`PrometheusQueryError` whose
``kind`` is the ``errorType`` (``bad_data``, ``execution``, …); transport failures, 401/403,
404, 429 and 5xx follow :func:`opslib.sources.http.call`. An empty result is not an error:
it is ``QueryResult.empty``, and :func:`no_data_finding` says what to check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

import httpx
import pandas as pd

from ..config import Target
from ..errors import (NotConfigured, PrometheusQueryError, SourceAuthError, SourceError,
                      SourceNotFound, SourceProtocolError)
from ..findings import Finding
from ..promql import NO_DATA_HINTS
from ..times import parse_duration
from ..reads import Read, Readings, Source
from ..redact import excerpt
from ..session import Session
from .fly import auth_header
from .http import call

SYSTEM = "prometheus"
MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)

_ERROR_HINTS = {
    "bad_data": "the server could not parse the query or its parameters: check the PromQL "
                "(a promql override, or metric names this server does not use)",
    "execution": "the server could not evaluate the query (e.g. too many series): narrow it",
    "timeout": "the query took too long on the server: shorten the window or raise the step",
    "canceled": "the server cancelled the query: run again",
    "internal": "the Prometheus server failed: check its status",
    "unavailable": "the Prometheus server is not ready: check its status",
}


def error_kind(error_type: Any, status: int) -> str:
    """Prometheus' ``errorType`` (``bad_data``, ``execution``, …). VictoriaMetrics — what
    Fly's managed metrics run — puts the HTTP status there instead (``"422"``): read that as
    the Prometheus kind it stands for."""
    text = str(error_type or "").strip()
    if not text.isdigit():
        return text or "error"
    code = int(text or status)
    return {400: "bad_data", 422: "bad_data", 503: "unavailable", 504: "timeout",
            429: "unavailable"}.get(code, "internal" if code >= 500 else "bad_data")


@dataclass
class QueryResult:
    """One query's answer. ``frame`` columns: ``timestamp``, the label columns, ``value``."""

    name: str
    query: str
    result_type: str
    frame: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    endpoint: str = ""  # the API root that answered

    @property
    def empty(self) -> bool:
        return self.frame.empty

    @property
    def labels(self) -> list[str]:
        return [c for c in self.frame.columns if c not in ("timestamp", "value")]


def _value(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def tidy(data: Mapping[str, Any], *, name: str = "", query: str = "") -> QueryResult:
    """Turn the ``data`` of a success envelope into a :class:`QueryResult`.

    Raises:
        SourceProtocolError: ``data`` is not shaped like a Prometheus result.
    """
    rtype = data.get("resultType") if isinstance(data, Mapping) else None
    result = data.get("result") if isinstance(data, Mapping) else None
    rows: list[dict[str, Any]] = []
    try:
        if rtype == "matrix":
            for series in result:
                labels = {("metric" if k == "__name__" else k): v
                          for k, v in (series.get("metric") or {}).items()}
                for t, v in series.get("values") or []:
                    rows.append({"timestamp": float(t), **labels, "value": _value(v)})
        elif rtype == "vector":
            for series in result:
                labels = {("metric" if k == "__name__" else k): v
                          for k, v in (series.get("metric") or {}).items()}
                t, v = series["value"]
                rows.append({"timestamp": float(t), **labels, "value": _value(v)})
        elif rtype in ("scalar", "string"):
            t, v = result
            rows.append({"timestamp": float(t), "value": _value(v)})
        else:
            raise TypeError(f"resultType {rtype!r}")
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise SourceProtocolError(
            f"prometheus: {name or 'query'} answer is not a Prometheus result ({exc})",
            system=SYSTEM, target=query,
            hint="the URL does not serve the Prometheus HTTP API; check FLY_PROMETHEUS_URL") from exc
    label_cols = sorted({k for r in rows for k in r} - {"timestamp", "value"})
    frame = pd.DataFrame(rows, columns=["timestamp", *label_cols, "value"])
    if label_cols:
        frame[label_cols] = frame[label_cols].fillna("")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"].astype(float), unit="s", utc=True)
    frame["value"] = frame["value"].astype(float)
    if label_cols:
        frame = frame.sort_values([*label_cols, "timestamp"], kind="stable").reset_index(drop=True)
    return QueryResult(name, query, str(rtype), frame)


def aligned_range(now: datetime, window: str, step: str) -> tuple[float, float, float]:
    """``(start, end, step)`` in Unix seconds: ``end`` is ``now`` (to the second), so the
    freshest sample is in the answer — rounding down to the step would drop up to a step of
    it, and a series younger than a step would read as "no data". A replay has the same
    ``now`` and so asks exactly the same question.

    Raises:
        UsageError: bad durations, a step under 1 s, or more than MAX_POINTS points.
    """
    from ..errors import UsageError

    window_s, step_s = parse_duration(window), parse_duration(step)
    if step_s < 1:
        raise UsageError(f"step {step!r} must be at least 1s")
    if window_s / step_s + 1 > MAX_POINTS:
        raise UsageError(f"window {window} at step {step} is {int(window_s / step_s) + 1} points "
                         f"per series; Prometheus allows {MAX_POINTS}: raise the step")
    end = float(math.floor(now.timestamp()))
    return end - window_s, end, step_s


def _num(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".")


class Prometheus:
    """Instant and range queries against one Prometheus HTTP API base URL.

    Args:
        session: the run's session (live, record or replay).
        base_url: the API root, without ``/api/v1`` (e.g. ``https://api.fly.io/prometheus/acme``).
        token: Fly token; sent as ``Authorization`` when given.
    """

    def __init__(self, session: Session, base_url: str, *, token: str = "",
                 timeout: httpx.Timeout | float | None = None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": auth_header(token)} if token else {}
        self.client = session.client(SYSTEM, base_url=self.base_url, headers=headers,
                                     timeout=timeout if timeout is not None else DEFAULT_TIMEOUT)

    def _get(self, path: str, params: dict[str, str], name: str, query: str) -> QueryResult:
        op = f"{path.rsplit('/', 1)[-1]} {name}".strip()
        try:
            response = call(self.session, self.client, "GET", f"/api/v1/{path}", params=params,
                            system=SYSTEM, op=op, ok_statuses=(400, 422))
        except SourceAuthError as exc:
            exc.hint = ("the token was refused: FLY_API_TOKEN must be allowed to read this org's "
                        "metrics (e.g. `fly tokens create readonly -o <org>`), and FLY_ORG must be "
                        "that org's slug")
            raise
        except SourceNotFound as exc:
            exc.hint = (f"nothing at {self.base_url}/api/v1/{path}: check FLY_ORG (the org slug, "
                        "`fly orgs list`) or FLY_PROMETHEUS_URL")
            raise
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise SourceProtocolError(
                f"prometheus: {op} answered with invalid JSON ({exc}): {excerpt(response.text, 120)!r}",
                system=SYSTEM, target=str(response.request.url), status=response.status_code,
                hint="the URL does not serve the Prometheus HTTP API; check FLY_PROMETHEUS_URL"
            ) from exc
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise SourceProtocolError(
                f"prometheus: {op} answer is not the Prometheus envelope: {excerpt(response.text, 120)!r}",
                system=SYSTEM, target=str(response.request.url), status=response.status_code,
                hint="the URL does not serve the Prometheus HTTP API; check FLY_PROMETHEUS_URL")
        if body["status"] == "error":
            etype = error_kind(body.get("errorType"), response.status_code)
            raise PrometheusQueryError(
                f"prometheus: {op} failed ({etype}, HTTP {response.status_code}): "
                f"{body.get('error', '')}",
                system=SYSTEM, target=query, status=response.status_code, kind=etype,
                hint=_ERROR_HINTS.get(etype, "see the server's error message"))
        result = tidy(body.get("data") or {}, name=name, query=query)
        result.warnings = [str(w) for w in body.get("warnings") or []]
        result.endpoint = self.base_url
        return result

    def query(self, promql: str, *, at: datetime, name: str = "") -> QueryResult:
        """Instant query at ``at`` (``/api/v1/query``)."""
        return self._get("query", {"query": promql, "time": _num(at.timestamp())}, name, promql)

    def query_range(self, promql: str, *, start: float, end: float, step: float,
                    name: str = "") -> QueryResult:
        """Range query over ``[start, end]`` (Unix seconds) every ``step`` seconds."""
        return self._get("query_range", {"query": promql, "start": _num(start), "end": _num(end),
                                         "step": _num(step)}, name, promql)


# --------------------------------------------------------------------------- configuration
def endpoint(target: Target) -> str:
    """``FLY_PROMETHEUS_URL``, else Fly's managed endpoint for ``FLY_ORG``."""
    url = target.env("FLY_PROMETHEUS_URL")
    if url:
        return url.rstrip("/")
    return f"{target.env('FLY_API_BASE_URL').rstrip('/')}/prometheus/{target.env('FLY_ORG')}"


def connect(session: Session, target: Target) -> Prometheus:
    """The Prometheus client for a run, or :class:`NotConfigured`.

    Fly's managed endpoint needs ``FLY_API_TOKEN``; a custom ``FLY_PROMETHEUS_URL`` works
    without one. Which endpoint was used is recorded, so a replay asks the same paths
    whatever its own environment says.
    """
    token = target.env("FLY_API_TOKEN")
    custom = bool(target.env("FLY_PROMETHEUS_URL"))
    url = session.capture("meta", SYSTEM, "endpoint",
                          lambda: endpoint(target) if (token or custom) else "",
                          op="prometheus endpoint", payload="endpoint")
    if not url:
        raise NotConfigured("Prometheus", "FLY_API_TOKEN (Fly's managed metrics) or "
                            "FLY_PROMETHEUS_URL (any Prometheus)",
                            hint="with a Fly token, FLY_ORG picks the org (default personal)")
    return Prometheus(session, url, token=token)


PROMETHEUS = Source("Prometheus", connect)


def range_reads(queries: Mapping[str, str], *, now: datetime, window: str,
                step: str, context: Iterable[str] = ()) -> list[Read]:
    """One read per named range query over ``window`` ending at ``now`` (see
    :func:`aligned_range`), each measured, failed or skipped on its own; those named in
    ``context`` are context for the verdict (see :class:`~opslib.reads.Read`).

    Raises:
        UsageError: a bad window or step (before any call is made).
    """
    start, end, step_s = aligned_range(now, window, step)
    return [Read(name, f"{name} over the last {window} every {step} (Prometheus)",
                 lambda p, q=q, n=name: p.query_range(q, start=start, end=end, step=step_s, name=n),
                 PROMETHEUS, context=name in set(context)) for name, q in queries.items()]


def instant_reads(queries: Mapping[str, str], *, now: datetime) -> list[Read]:
    """One read per named instant query at ``now``."""
    return [Read(name, f"{name} now (Prometheus)",
                 lambda p, q=q, n=name: p.query(q, at=now, name=n), PROMETHEUS)
            for name, q in queries.items()]


def results(readings: Readings, names: Iterable[str]) -> dict[str, QueryResult | SourceError]:
    """The answer (or the error) of each named query that was read; skipped ones are absent."""
    return {n: readings[n].value if readings[n].measured else readings[n].error
            for n in names if n in readings and not readings[n].skipped}


# --------------------------------------------------------------------------- findings
def no_data_finding(result: QueryResult, *, app: str, window: str, severity: str = "unknown",
                    what: str = "") -> Finding:
    """The explicit "no data" outcome of an empty query: never silently OK."""
    hint = NO_DATA_HINTS.get(result.name, "")
    endpoint_url = result.endpoint
    return Finding(
        f"no-data-{result.name.replace('_', '-')}", severity,
        f"no data from Prometheus for {what or result.name} over the last {window}",
        "the query returned no series. Check: the app label is the Fly app name "
        f"({app!r}); the endpoint{' ' + endpoint_url if endpoint_url else ''} is the org that "
        "owns the app (FLY_ORG); the metric exists on this server — a plain Prometheus may name "
        f"it differently: override it with promql={{\"{result.name}\": \"…{{app}}…\"}}"
        + (f"; {hint}" if hint else "") + ".",
        [f"query: {result.query}"], source=SYSTEM)


def error_finding(name: str, exc: SourceError, *, what: str = "") -> Finding:
    """A failed query as a finding: the check could not run, and why."""
    return Finding(f"prometheus-error-{name.replace('_', '-')}", "unknown",
                   f"could not read {what or name} from Prometheus: {exc.kind}",
                   f"{exc.message}. {exc.hint}".strip(),
                   [f"query: {exc.target}"] if exc.target else [], source=SYSTEM)
