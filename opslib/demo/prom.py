"""Demo Prometheus: answers the runbooks' PromQL from synthetic series, in the API envelope.

A scenario gives, per query name (:mod:`opslib.promql`), a list of ``(labels, fn)`` where
``fn(t)`` is the value at Unix time ``t`` (None: no sample). The handler evaluates range and
instant queries at exactly the timestamps asked, so the capture holds what a real server
would have answered. A query it does not know gets an empty result, as a real server gives
for an absent metric.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import httpx

from ..promql import QuerySet
from .world import APP, World, json_response

SeriesFn = Callable[[float], "float | None"]
Series = tuple[dict[str, str], SeriesFn]
ORG = "personal"
BASE = f"https://api.fly.io/prometheus/{ORG}"


def fmt(value: float) -> str:
    """A sample value as Prometheus writes it (shortest form, ``NaN``, ``+Inf``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(round(float(value), 4))
    return text[:-2] if text.endswith(".0") else text


def handler(queries: QuerySet, series: Mapping[str, Sequence[Series]],
            latency_ms: float = 60.0) -> Callable[[httpx.Request], httpx.Response]:
    by_query = {queries[name]: name for name in series}

    def handle(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        defs = series.get(by_query.get(params.get("query", ""), ""), ())
        if request.url.path.endswith("/query_range"):
            start, end, step = (float(params[k]) for k in ("start", "end", "step"))
            stamps = [start + i * step for i in range(int(round((end - start) / step)) + 1)]
            result = []
            for labels, fn in defs:
                values = [[_t(t), fmt(v)] for t in stamps if (v := fn(t)) is not None]
                if values:
                    result.append({"metric": labels, "values": values})
            data = {"resultType": "matrix", "result": result}
        else:
            t = float(params["time"])
            data = {"resultType": "vector",
                    "result": [{"metric": labels, "value": [_t(t), fmt(v)]}
                               for labels, fn in defs if (v := fn(t)) is not None]}
        return json_response(200, {"status": "success", "data": data}, latency_ms=latency_ms)

    return handle


def _t(t: float) -> float | int:
    return int(t) if float(t).is_integer() else round(t, 3)


def add_prometheus(world: World, queries: QuerySet, series: Mapping[str, Sequence[Series]]) -> World:
    """Serve ``series`` on Fly's managed endpoint (org ``personal``) in ``world``."""
    h = handler(queries, series)
    world.route("prometheus", "GET", f"/prometheus/{ORG}/api/v1/query_range", h)
    world.route("prometheus", "GET", f"/prometheus/{ORG}/api/v1/query", h)
    world.answer("meta", "prometheus", "endpoint", BASE)
    return world


def instance_labels(instance: str, region: str) -> dict[str, str]:
    return {"app": APP, "host": "a1b2", "instance": instance, "region": region}
