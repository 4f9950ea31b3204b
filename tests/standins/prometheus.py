"""STAND-IN for Fly's managed Prometheus (``https://api.fly.io/prometheus/<org>``), reference §3.

It speaks the Prometheus HTTP API envelope (prometheus.io/docs/prometheus/latest/querying/api/)
for ``/api/v1/query`` and ``/api/v1/query_range`` (GET, or POST with a form body) under
``/prometheus/<org>``. It is not a PromQL engine: each *known* query string (whitespace
collapsed) maps to fixture series ``(labels, fn)`` where ``fn(t)`` is the value at Unix time
``t`` (None: no sample); an unknown but well-formed query answers an empty result, as a real
server does for an absent metric.

Strict like the real endpoint:
* ``Authorization`` must be ``Bearer <token>`` (or ``FlyV1 <token>`` for macaroon tokens):
  anything else gets 401 with Fly's ``{"error": …}`` body; a token listed in ``forbidden``
  (valid, but not for this org) gets 403; another org's path gets 404;
* bad parameters get 400 ``bad_data`` with Prometheus' own messages; unbalanced brackets or
  quotes get 400 ``bad_data`` "parse error"; more than 11,000 points per series is refused.
  Fly's managed metrics are VictoriaMetrics, whose error bodies carry the HTTP status as
  ``errorType`` (``"422"`` for a query it cannot parse, app/vmselect): ``flavour=
  "victoriametrics"`` answers that way;
* ``latency`` (seconds) delays every answer, as a real server over the network does
  (:class:`tests.servers.LocalHTTPServer`).

Every request is recorded (``requests``; ``queries`` decodes their parameters).
``fail_next(*replies)`` makes the next requests answer with the given replies first (5xx,
429 with ``Retry-After``, malformed JSON, a delay past the client's timeout…).
"""
from __future__ import annotations

import re
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from tests.servers import LocalHTTPServer, Reply, Request

SeriesFn = Callable[[float], "float | None"]
Fixture = dict[str, list[tuple[dict[str, str], SeriesFn]]]
MAX_POINTS = 11_000
_PAIRS = {"(": ")", "{": "}", "[": "]"}


def normalise(query: str) -> str:
    return " ".join(query.split())


def parse_error(query: str) -> str | None:
    """A Prometheus-style parse error for unbalanced brackets or quotes, else None."""
    if not query.strip():
        return "1:1: parse error: no expression found in input"
    stack: list[tuple[str, int]] = []
    quote = ""
    for i, ch in enumerate(query, 1):
        if quote:
            if ch == quote and query[i - 2] != "\\":
                quote = ""
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in _PAIRS:
            stack.append((ch, i))
        elif ch in _PAIRS.values():
            if not stack or _PAIRS[stack[-1][0]] != ch:
                return f"1:{i}: parse error: unexpected right {_name(ch)} '{ch}'"
            stack.pop()
    if quote:
        return f"1:{len(query)}: parse error: unterminated quoted string {quote}"
    if stack:
        ch, i = stack[-1]
        return f"1:{i}: parse error: unclosed left {_name(ch)}"
    return None


def _name(ch: str) -> str:
    return {"(": "parenthesis", ")": "parenthesis", "{": "brace", "}": "brace",
            "[": "bracket", "]": "bracket"}[ch]


def _fmt(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def bad_data(message: str, flavour: str = "prometheus", parse: bool = False) -> Reply:
    if flavour == "victoriametrics":
        status = 422 if parse else 400
        return Reply(status, {"status": "error", "errorType": str(status), "error": message})
    return Reply(400, {"status": "error", "errorType": "bad_data", "error": message})


class PrometheusStandIn(LocalHTTPServer):
    def __init__(self, token: str, fixture: Fixture | None = None, *, org: str = "personal",
                 forbidden: Iterable[str] = (), flavour: str = "prometheus",
                 latency: float = 0.0) -> None:
        self.token = token
        self.flavour, self.latency = flavour, latency
        self.org = org
        self.forbidden = set(forbidden)
        self.fixture = {normalise(q): s for q, s in (fixture or {}).items()}
        self._next: list[Reply] = []
        super().__init__(self._handle)

    @property
    def base(self) -> str:
        """What FLY_PROMETHEUS_URL is set to: the stand-in's ``/prometheus/<org>``."""
        return f"{self.url}/prometheus/{self.org}"

    @property
    def queries(self) -> list[dict[str, str]]:
        """The parameters of every query request, in order."""
        return [self._params(r) for r in self.requests if "/api/v1/query" in r.path]

    @property
    def mutations(self) -> list[Request]:
        """Anything that is not a read (the query API is read-only; POST is a form read)."""
        return [r for r in self.requests
                if not (r.method in ("GET", "POST") and re.search(r"/api/v1/query(_range)?(\?|$)",
                                                                  r.path))]

    def fail_next(self, *replies: Reply) -> None:
        self._next.extend(replies)

    @staticmethod
    def _params(req: Request) -> dict[str, str]:
        params = {k: v[-1] for k, v in parse_qs(urlsplit(req.path).query,
                                                keep_blank_values=True).items()}
        if req.method == "POST" and req.body:
            params.update({k: v[-1] for k, v in parse_qs(req.body.decode(),
                                                         keep_blank_values=True).items()})
        return params

    def _auth(self, req: Request) -> Reply | None:
        got = req.headers.get("authorization", "")
        for token in {self.token, *self.forbidden}:
            macaroon = any(p.strip().startswith(("fm1r_", "fm1a_", "fm2_")) for p in token.split(","))
            if got == f"{'FlyV1' if macaroon else 'Bearer'} {token}":
                if token in self.forbidden:
                    return Reply(403, {"error": "Not authorized to access this organization"})
                return None
        return Reply(401, {"error": "You must be authenticated to view this."})

    def _bad(self, message: str, parse: bool = False) -> Reply:
        return bad_data(message, self.flavour, parse)

    def _handle(self, req: Request) -> Reply:
        denied = self._auth(req)
        if denied is not None:
            return denied
        if self._next:
            return self._next.pop(0)
        path = urlsplit(req.path).path
        m = re.match(r"^/prometheus/([^/]+)/api/v1/(query|query_range)$", path)
        if not m:
            return Reply(404, {"error": "Not Found"})
        if m.group(1) != self.org:
            return Reply(404, {"error": f"organization {m.group(1)} not found"})
        if req.method not in ("GET", "POST"):
            return Reply(405, {"error": "method not allowed"})
        params = self._params(req)
        query = params.get("query", "")
        problem = parse_error(query)
        if problem:
            return self._bad(problem if query.strip() else
                             f"invalid parameter \"query\": {problem}", parse=True)
        series = self.fixture.get(normalise(query), [])
        if m.group(2) == "query":
            try:
                t = float(params.get("time", "0"))
            except ValueError:
                return self._bad(f"invalid parameter \"time\": cannot parse \"{params['time']}\" "
                                "to a valid timestamp")
            result = [{"metric": labels, "value": [t, _fmt(v)]}
                      for labels, fn in series if (v := fn(t)) is not None]
            return Reply(200, {"status": "success",
                               "data": {"resultType": "vector", "result": result}})
        try:
            start, end = float(params["start"]), float(params["end"])
        except (KeyError, ValueError):
            name = "start" if "start" not in params else "end"
            return self._bad(f"invalid parameter \"{name}\": cannot parse "
                            f"\"{params.get(name, '')}\" to a valid timestamp")
        try:
            step = float(params["step"])
        except (KeyError, ValueError):
            return self._bad(f"invalid parameter \"step\": cannot parse \"{params.get('step', '')}\""
                            " to a valid duration")
        if end < start:
            return self._bad("end timestamp must not be before start time")
        if step <= 0:
            return self._bad("zero or negative query resolution step widths are not accepted. "
                            "Try a positive integer")
        if (end - start) / step > MAX_POINTS:
            return self._bad("exceeded maximum resolution of 11,000 points per timeseries. "
                            "Try decreasing the query resolution (?step=XX)")
        stamps = [start + i * step for i in range(int((end - start) // step) + 1)]
        result = []
        for labels, fn in series:
            values = [[t, _fmt(v)] for t in stamps if (v := fn(t)) is not None]
            if values:
                result.append({"metric": labels, "values": values})
        return Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})
