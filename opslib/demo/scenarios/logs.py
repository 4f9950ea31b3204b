"""Demo scenarios of the logs runbook: a realistic stream with an incident hidden in it."""
from __future__ import annotations

from ...logscan import synth
from ..world import ENV, World, logs_route


def _collect(session, target):  # noqa: ANN001
    from ...runbooks import logs

    return logs.collect(session, target, window_minutes=30, max_pages=100)


def _world(incident: bool) -> tuple[World, object]:
    w = World(configured={"FLY_API_TOKEN"}, environ=ENV)
    logs_route(w, list(synth.entries(4000, seed=11, incident=incident, mean_gap=0.25)))
    return w, _collect


SCENARIOS = {
    "logs": {
        "incident": ("~4,000 lines of ordinary traffic hiding an OOM kill, proxy PC01s, "
                     "Postgres/Supavisor connection exhaustion and JWTs issued in the future",
                     lambda: _world(True)),
        "quiet": ("the same traffic without the incident: access logs with 'error' in URLs, "
                  "boot lines, auto-stop shutdowns — nothing must be raised",
                  lambda: _world(False)),
    },
}
