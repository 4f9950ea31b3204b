"""Fly Machines API client (``https://api.machines.dev/v1``, reference §1).

Read-only calls here; mutating calls (restart, stop, start, …) are only ever made through the
gated remediation path.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from ..actions import Action, executor
from ..errors import NotConfigured
from ..session import Session, iso, parse_time
from .http import call_json

if TYPE_CHECKING:  # pragma: no cover
    from ..context import Run

SYSTEM = "fly-machines"
MACHINE_COLUMNS = ["id", "name", "state", "region", "image", "cpu_kind", "cpus", "memory_mb",
                   "checks_total", "checks_passing", "checks_critical", "last_exit_code",
                   "oom_killed", "restart_count", "last_exit_at", "updated_at"]


def auth_header(token: str) -> str:
    """``FlyV1 <macaroons>`` for fm1r_/fm1a_/fm2_ tokens, ``Bearer <token>`` otherwise.

    A value that already carries its scheme (``FlyV1 …`` / ``Bearer …``) is used as given.
    """
    token = token.strip()
    if token.startswith(("FlyV1 ", "Bearer ")):
        return token
    parts = [p.strip() for p in token.split(",")]
    if any(p.startswith(("fm1r_", "fm1a_", "fm2_")) for p in parts):
        return f"FlyV1 {token}"
    return f"Bearer {token}"


class FlyMachines:
    """List and read machines of one app."""

    def __init__(self, session: Session, app: str, *, token: str, base_url: str) -> None:
        if session.mode != "replay" and not token:
            raise NotConfigured("Fly Machines API", "FLY_API_TOKEN",
                                hint="create one with `fly tokens create readonly` and export it")
        self.session, self.app = session, app
        headers = {"Authorization": auth_header(token)} if token else {}
        self.client = session.client(SYSTEM, base_url=base_url.rstrip("/") + "/v1",
                                     headers=headers)

    def list_machines(self) -> list[dict[str, Any]]:
        return call_json(self.session, self.client, "GET",
                         f"/apps/{quote(self.app)}/machines", system=SYSTEM, op="list_machines")

    def get_machine(self, machine_id: str) -> dict[str, Any]:
        return call_json(self.session, self.client, "GET",
                         f"/apps/{quote(self.app)}/machines/{quote(machine_id)}",
                         system=SYSTEM, op="get_machine")

    def events(self, machine_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return call_json(self.session, self.client, "GET",
                         f"/apps/{quote(self.app)}/machines/{quote(machine_id)}/events",
                         params={"limit": limit}, system=SYSTEM, op="machine_events")


    # Mutating calls: only ever made by executors of a confirmed plan (opslib.actions).
    def _post(self, path: str, op: str, **kwargs: Any) -> Any:
        return call_json(self.session, self.client, "POST", path, system=SYSTEM, op=op,
                         idempotent=False, **kwargs)

    def restart(self, machine_id: str) -> Any:
        return self._post(f"/apps/{quote(self.app)}/machines/{quote(machine_id)}/restart",
                          "restart_machine")

    def stop(self, machine_id: str) -> Any:
        return self._post(f"/apps/{quote(self.app)}/machines/{quote(machine_id)}/stop",
                          "stop_machine", json={})

    def start(self, machine_id: str) -> Any:
        return self._post(f"/apps/{quote(self.app)}/machines/{quote(machine_id)}/start",
                          "start_machine")


def machines_client(run: "Run") -> FlyMachines:
    """The Machines API client for a run's live target (used by executors)."""
    return FlyMachines(run.session, run.app, token=run.target.env("FLY_API_TOKEN"),
                       base_url=run.target.env("FLY_FLAPS_BASE_URL"))


@executor("machine.start")
def _apply_start(run: "Run", action: Action) -> Any:
    return machines_client(run).start(action.params["machine_id"])


@executor("machine.restart")
def _apply_restart(run: "Run", action: Action) -> Any:
    return machines_client(run).restart(action.params["machine_id"])


@executor("machine.stop")
def _apply_stop(run: "Run", action: Action) -> Any:
    return machines_client(run).stop(action.params["machine_id"])


# --------------------------------------------------------------------------- analysis helpers
def exit_event(event: dict[str, Any]) -> dict[str, Any] | None:
    """The exit data of a machine event, wherever flyd put it.

    fly-go checks ``request.MonitorEvent.exit_event`` first, then ``request.exit_event``;
    key casing varies, so keys are matched case-insensitively.
    """
    request = event.get("request") or {}
    if not isinstance(request, dict):
        return None
    lowered = {k.lower(): v for k, v in request.items()}
    monitor = lowered.get("monitorevent")
    if isinstance(monitor, dict):
        inner = {k.lower(): v for k, v in monitor.items()}.get("exit_event")
        if isinstance(inner, dict):
            return inner
    ee = lowered.get("exit_event")
    return ee if isinstance(ee, dict) else None


def machines_frame(machines: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per machine with the fields a diagnosis needs (columns: MACHINE_COLUMNS)."""
    rows = []
    for m in machines:
        config = m.get("config") or m.get("incomplete_config") or {}
        guest = config.get("guest") or {}
        checks = [c for c in (m.get("checks") or [])
                  if not str(c.get("name", "")).startswith("bg_deployments_compat")]
        last_exit: dict[str, Any] = {}
        restarts = 0
        for ev in m.get("events") or []:  # newest first
            ee = exit_event(ev)
            if ee is not None:
                if not last_exit:
                    last_exit = ee
                req = ev.get("request") or {}
                restarts = max(restarts, int(req.get("restart_count") or 0))
        exited = parse_time(last_exit.get("exited_at")) if last_exit else None
        rows.append({
            "id": m.get("id", ""),
            "name": m.get("name", ""),
            "state": m.get("state", ""),
            "region": m.get("region", ""),
            "image": config.get("image", ""),
            "cpu_kind": guest.get("cpu_kind", ""),
            "cpus": guest.get("cpus"),
            "memory_mb": guest.get("memory_mb"),
            "checks_total": len(checks),
            "checks_passing": sum(c.get("status") == "passing" for c in checks),
            "checks_critical": sum(c.get("status") == "critical" for c in checks),
            "last_exit_code": last_exit.get("exit_code") if last_exit else None,
            "oom_killed": bool(last_exit.get("oom_killed")) if last_exit else False,
            "restart_count": restarts,
            "last_exit_at": iso(exited) if exited else None,
            "updated_at": m.get("updated_at", ""),
        })
    return pd.DataFrame(rows, columns=MACHINE_COLUMNS)


def checks_frame(machines: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per health check per machine: machine, name, status, output, updated_at."""
    rows = [{"machine": m.get("id", ""), "name": c.get("name", ""),
             "status": c.get("status", ""), "output": c.get("output", ""),
             "updated_at": c.get("updated_at", "")}
            for m in machines for c in (m.get("checks") or [])
            if not str(c.get("name", "")).startswith("bg_deployments_compat")]
    return pd.DataFrame(rows, columns=["machine", "name", "status", "output", "updated_at"])
