"""Public status pages: status.supabase.com (Atlassian Statuspage v2) and Fly's incidents feed.

Reference §5.3. Both are public (no token). Each gives a :class:`StatusPage`: an overall
``indicator`` (``none`` | ``minor`` | ``major`` | ``critical``, Statuspage's scale), the
components and the unresolved incidents as DataFrames. A page that cannot be read raises
:class:`~opslib.errors.SourceError`; the runbook turns that into an ``unknown`` finding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import SourceProtocolError
from ..redact import excerpt
from ..session import Session
from ..times import parse_time
from .http import call_json

SUPABASE_SYSTEM = "supabase-status"
FLY_SYSTEM = "fly-status"
INDICATORS = ("none", "minor", "major", "critical")
COMPONENT_COLUMNS = ["name", "status", "group", "updated_at"]
INCIDENT_COLUMNS = ["name", "status", "impact", "created_at", "updated_at", "components",
                    "latest_update"]
# Component statuses that are not "operational", mapped onto the indicator scale.
_COMPONENT_IMPACT = {"degraded_performance": "minor", "partial_outage": "major",
                     "major_outage": "critical", "under_maintenance": "minor"}
_RESOLVED = {"resolved", "completed", "postmortem"}


@dataclass
class StatusPage:
    """One status page as a runbook reads it."""

    name: str
    url: str
    indicator: str
    description: str
    components: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COMPONENT_COLUMNS))
    incidents: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INCIDENT_COLUMNS))
    maintenances: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INCIDENT_COLUMNS))

    @property
    def degraded(self) -> pd.DataFrame:
        """Components that are not ``operational``."""
        if self.components.empty:
            return self.components
        return self.components[self.components["status"] != "operational"]

    @property
    def ok(self) -> bool:
        return self.indicator == "none" and self.degraded.empty and self.incidents.empty


def _worse(a: str, b: str) -> str:
    return max(a, b, key=lambda s: INDICATORS.index(s) if s in INDICATORS else 0)


def _incidents(items: list[Any]) -> pd.DataFrame:
    rows = []
    for i in items or []:
        if not isinstance(i, dict) or str(i.get("status", "")).lower() in _RESOLVED:
            continue
        if i.get("resolved_at"):
            continue
        updates = i.get("incident_updates") or []
        latest = updates[0].get("body", "") if updates and isinstance(updates[0], dict) else ""
        rows.append({"name": i.get("name", ""), "status": i.get("status", ""),
                     "impact": i.get("impact", ""),
                     "created_at": parse_time(i.get("started_at") or i.get("created_at")),
                     "updated_at": parse_time(i.get("updated_at")),
                     "components": ", ".join(c.get("name", "") for c in i.get("components") or []
                                             if isinstance(c, dict)),
                     "latest_update": excerpt(latest, 200)})
    return pd.DataFrame(rows, columns=INCIDENT_COLUMNS)


def supabase_status(session: Session, base_url: str) -> StatusPage:
    """``GET {SUPABASE_STATUS_URL}/api/v2/summary.json`` (Statuspage v2)."""
    client = session.client(SUPABASE_SYSTEM, base_url=base_url.rstrip("/"))
    body = call_json(session, client, "GET", "/api/v2/summary.json", system=SUPABASE_SYSTEM,
                     op="status_summary")
    if not isinstance(body, dict) or not isinstance(body.get("status"), dict):
        raise SourceProtocolError("supabase-status: summary.json has no 'status' object",
                                  system=SUPABASE_SYSTEM, target=base_url,
                                  hint="SUPABASE_STATUS_URL must be a Statuspage v2 site")
    groups = {c.get("id"): c.get("name", "") for c in body.get("components") or []
              if isinstance(c, dict) and c.get("group")}
    comps = [{"name": c.get("name", ""), "status": c.get("status", ""),
              "group": groups.get(c.get("group_id"), ""),
              "updated_at": parse_time(c.get("updated_at"))}
             for c in body.get("components") or [] if isinstance(c, dict) and not c.get("group")]
    indicator = str(body["status"].get("indicator") or "none")
    return StatusPage("status.supabase.com", base_url, indicator,
                      str(body["status"].get("description") or ""),
                      pd.DataFrame(comps, columns=COMPONENT_COLUMNS),
                      _incidents(body.get("incidents") or []),
                      _incidents(body.get("scheduled_maintenances") or []))


def fly_incidents(session: Session, url: str) -> StatusPage:
    """``GET {FLY_INCIDENTS_URL}`` → ``{"incidents": [...]}`` (flyctl ``internal/incidents``).

    The feed has no overall indicator; it is derived from the unresolved incidents' impact
    (``minor`` when an incident gives none).
    """
    client = session.client(FLY_SYSTEM)
    body = call_json(session, client, "GET", url, system=FLY_SYSTEM, op="incidents")
    if not isinstance(body, dict) or not isinstance(body.get("incidents"), list):
        raise SourceProtocolError("fly-status: the incidents feed has no 'incidents' list",
                                  system=FLY_SYSTEM, target=url,
                                  hint="FLY_INCIDENTS_URL must be Fly's incidents feed")
    incidents = _incidents(body["incidents"])
    indicator = "none"
    for impact in incidents["impact"]:
        indicator = _worse(indicator, impact if impact in INDICATORS and impact != "none" else "minor")
    description = ("no unresolved incidents" if incidents.empty
                   else f"{len(incidents)} unresolved incident(s)")
    return StatusPage("Fly.io incidents", url, indicator, description, incidents=incidents)


def component_indicator(page: StatusPage, names: tuple[str, ...]) -> str:
    """The worst indicator among components whose name contains one of ``names``
    (case-insensitive), e.g. ``("database", "pooler")``."""
    worst = "none"
    for row in page.components.itertuples():
        if any(n.lower() in str(row.name).lower() for n in names):
            worst = _worse(worst, _COMPONENT_IMPACT.get(row.status, "none"))
    return worst
