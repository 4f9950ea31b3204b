"""The PromQL every runbook asks, in one place (metric names: reference §3, Fly's managed Prometheus).

Each query is a template with placeholders:

* ``{app}``    the Fly app name (as a PromQL string, quotes escaped);
* ``{rate}``   the ``rate()`` window, e.g. ``5m``;
* ``{window}`` the look-back of "anything in the window" queries, e.g. ``6h``.

A runbook parameter ``promql = {"memory_pct": "…{app}…"}`` replaces any of them by name, so
the same runbook works against a plain Prometheus whose metric names or labels differ from
Fly's. Units are fixed per name (see :data:`UNITS`) whatever the query.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .errors import UsageError
from .times import parse_duration

if TYPE_CHECKING:  # pragma: no cover
    from .reads import Readings

QUERIES: dict[str, str] = {
    # memory in use, % of the machine's RAM: what is *not available* (page cache is available)
    "memory_pct":
        '100 * (1 - fly_instance_memory_mem_available{app="{app}"} '
        '/ fly_instance_memory_mem_total{app="{app}"})',
    # the number a naive "used = total - free" dashboard shows: counts page cache as used
    "memory_used_incl_cache_pct":
        '100 * (1 - fly_instance_memory_mem_free{app="{app}"} '
        '/ fly_instance_memory_mem_total{app="{app}"})',
    "memory_total_bytes": 'fly_instance_memory_mem_total{app="{app}"}',
    # 1 when the instance's last exit in the window was an OOM kill
    "oom_exits": 'max by (instance) (max_over_time(fly_instance_exit_oom{app="{app}"}[{window}]))',
    # busy CPU, % of the machine's vCPUs (counter in centiseconds: rate/100 = busy cores)
    "cpu_pct":
        'sum by (instance) (rate(fly_instance_cpu{app="{app}",mode!="idle"}[{rate}])) '
        '/ count by (instance) (fly_instance_cpu{app="{app}",mode="idle"})',
    "error_rate_pct":
        '100 * sum(rate(fly_edge_http_responses_count{app="{app}",status=~"5.."}[{rate}])) '
        '/ clamp_min(sum(rate(fly_edge_http_responses_count{app="{app}"}[{rate}])), 1e-9)',
    "edge_5xx_by_status":
        'sum by (status) (rate(fly_edge_http_responses_count{app="{app}",status=~"5.."}[{rate}]))',
    "request_rate": 'sum(rate(fly_edge_http_responses_count{app="{app}"}[{rate}]))',
    "p95_latency_ms":
        '1000 * histogram_quantile(0.95, sum by (le) '
        '(rate(fly_edge_http_response_time_seconds_bucket{app="{app}"}[{rate}])))',
    "concurrency": 'sum by (instance) (fly_app_concurrency{app="{app}"})',
}

UNITS: dict[str, str] = {
    "memory_pct": "%", "memory_used_incl_cache_pct": "%", "memory_total_bytes": "bytes",
    "oom_exits": "0/1", "cpu_pct": "%", "error_rate_pct": "%", "edge_5xx_by_status": "req/s",
    "request_rate": "req/s", "p95_latency_ms": "ms", "concurrency": "connections",
}

# What to check when a query returns no series, per query (beyond the general advice).
NO_DATA_HINTS: dict[str, str] = {
    "memory_pct": "fly_instance_memory_* exist only while machines run",
    "memory_used_incl_cache_pct": "fly_instance_memory_mem_free is reported with mem_available",
    "memory_total_bytes": "fly_instance_memory_mem_total exists only while machines run",
    "oom_exits": "fly_instance_exit_oom is set only after a machine has exited",
    "cpu_pct": "fly_instance_cpu exists only while machines run",
    "error_rate_pct": "edge metrics need traffic through Fly's proxy",
    "edge_5xx_by_status": "no 5xx at the edge gives an empty result, which is good news",
    "request_rate": "edge metrics need traffic through Fly's proxy",
    "p95_latency_ms": "edge metrics need traffic through Fly's proxy",
    "concurrency": "fly_app_concurrency needs traffic through Fly's proxy",
}

_PLACEHOLDERS = ("{app}", "{rate}", "{window}")


def promql_string(value: str) -> str:
    """``value`` escaped for use inside a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class QuerySet:
    """The rendered queries of one run: name -> PromQL (defaults with overrides applied)."""

    app: str
    rate: str
    window: str
    queries: dict[str, str]
    overridden: frozenset[str]

    def __getitem__(self, name: str) -> str:
        return self.queries[name]


def validate_overrides(overrides: Mapping[str, str] | None) -> dict[str, str]:
    """Check a ``promql`` parameter: known names, non-empty strings, known placeholders only."""
    out: dict[str, str] = {}
    for name, template in (overrides or {}).items():
        if name not in QUERIES:
            raise UsageError(f"promql override for unknown query {name!r}; "
                             f"known: {', '.join(QUERIES)}")
        if not isinstance(template, str) or not template.strip():
            raise UsageError(f"promql override {name!r} must be a non-empty PromQL string")
        stray = set(re.findall(r"\{[a-z_]+\}", template)) - set(_PLACEHOLDERS)
        if stray:
            raise UsageError(f"promql override {name!r} uses unknown placeholder(s) "
                             f"{', '.join(sorted(stray))}; allowed: {', '.join(_PLACEHOLDERS)}")
        out[name] = template
    return out


def render(template: str, *, app: str, rate: str = "5m", window: str = "1h") -> str:
    """Fill a template's placeholders (only ``{app}``, ``{rate}``, ``{window}``; other braces,
    such as label matchers, are left alone)."""
    return (template.replace("{app}", promql_string(app)).replace("{rate}", rate)
            .replace("{window}", window))


def queries(app: str, *, rate: str = "5m", window: str = "1h",
            overrides: Mapping[str, str] | None = None) -> QuerySet:
    """Every query rendered for ``app``, with ``overrides`` (the ``promql`` parameter) applied.

    Raises:
        UsageError: bad durations or overrides.
    """
    parse_duration(rate)
    parse_duration(window)
    over = validate_overrides(overrides)
    rendered = {name: render(over.get(name, tpl), app=app, rate=rate, window=window)
                for name, tpl in QUERIES.items()}
    return QuerySet(app, rate, window, rendered, frozenset(over))


@dataclass(frozen=True)
class MetricsData:
    """What a metrics runbook collected: its window and step, the queries it asked (after
    overrides) and its readings."""

    window: str
    step: str
    queries: QuerySet
    readings: "Readings"
