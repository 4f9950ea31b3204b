"""Fly.io platform issues (the seed's Level 2 escalation) from Fly's incidents feed, for the
regions the app runs in.

The feed (``https://incidents.flyio.net/v1/incidents``, what ``flyctl`` reads; reference
§5.3) lists unresolved incidents with their components. An incident that names one of the
app's regions (its code, e.g. ``IAD``), or names no region at all (platform-wide), concerns
the app; one about other regions does not.
"""
from __future__ import annotations

import re
from typing import Iterable

from ..config import Target
from ..findings import Finding
from ..reads import Read, Reading, Readings
from ..session import Session
from ..sources.status import fly_incidents

FLY_INCIDENTS_URL = "https://incidents.flyio.net/v1/incidents"
# Fly's regions (`fly platform regions`): an incident naming none of them is platform-wide.
REGIONS = ("ams", "arn", "atl", "bog", "bom", "bos", "cdg", "den", "dfw", "ewr", "eze", "fra",
           "gdl", "gig", "gru", "hkg", "iad", "jnb", "lax", "lhr", "mad", "mia", "nrt", "ord",
           "otp", "phx", "qro", "scl", "sea", "sin", "sjc", "syd", "waw", "yul", "yyz")
L2 = "Fly.io platform issues are handled by the Platform Team (Level 2)"


def read(session: Session, target: Target) -> Read:
    """Context for the verdict: the app's own checks say what is broken, the feed whether
    Fly says so too."""
    url = target.env("FLY_INCIDENTS_URL") or FLY_INCIDENTS_URL
    return Read("fly-status", f"Fly.io's incidents feed ({url})",
                lambda: fly_incidents(session, url), context=True)


def _regions_named(text: str) -> set[str]:
    return {r for r in REGIONS if re.search(rf"\b{r}\b", text, re.I)}


def findings(reading: Reading | None, regions: Iterable[str]) -> list[Finding]:
    """An unresolved incident in the app's regions (or platform-wide) → warning, Level 2."""
    if reading is None or reading.skipped:
        return []
    if not reading.measured:
        return [Finding("fly-status-unread", "info", "could not read Fly's incidents feed",
                        reading.detail, source="fly-status")]
    page = reading.value
    ours = {r.lower() for r in regions if r}
    hits = []
    for row in page.incidents.itertuples():
        named = _regions_named(f"{row.name} {row.components}")
        if not named or named & ours:
            hits.append((row, sorted(named & ours)))
    if not hits:
        return []  # "What this run read" shows the feed was read
    return [Finding("fly-platform-incident", "warning",
                    f"Fly.io reports {len(hits)} unresolved incident(s) affecting "
                    + (", ".join(sorted({r for _, rs in hits for r in rs})) or "the platform"),
                    "a platform problem can explain what this run sees: follow the incident, "
                    "and escalate rather than restart",
                    [f"{row.name} ({row.status}, impact {row.impact or '?'}): "
                     f"{row.latest_update}" for row, _ in hits],
                    escalate=2, escalate_reason=L2, source="fly-status")]


def app_findings(readings: Readings) -> list[Finding]:
    """:func:`findings` for the regions of the machines read alongside (``machines``)."""
    machines = readings.value("machines") or []
    return findings(readings.get("fly-status"), [m.region for m in machines])
