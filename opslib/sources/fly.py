"""Fly Machines API client (``https://api.machines.dev/v1``, reference §1).

Reads: machines, one machine, its events, ``wait``, certificates (list, detail). Mutating calls
(restart, stop, start, update, certificate check/add/remove) are only ever made by the
executors at the bottom of this module, i.e. through the gated remediation path
(:mod:`opslib.actions`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from ..actions import Action, executor
from ..errors import NotConfigured, OpsError, SourceError, SourceProtocolError
from ..session import Session
from ..times import iso, parse_time
from .http import call, call_json

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Target
    from ..context import Run

SYSTEM = "fly-machines"
MACHINE_COLUMNS = ["id", "name", "state", "region", "image", "cpu_kind", "cpus", "memory_mb",
                   "checks_total", "checks_passing", "checks_critical", "last_exit_code",
                   "oom_killed", "restart_count", "last_exit_at", "updated_at"]
EVENT_COLUMNS = ["machine", "timestamp", "type", "status", "source", "exit_code", "oom_killed",
                 "requested_stop", "restart_count"]
CERT_COLUMNS = ["hostname", "status", "configured", "acme_requested", "dns_configured",
                "alpn_configured", "http_configured", "ownership_txt_configured",
                "has_fly_certificate", "has_custom_certificate", "created_at", "updated_at"]
EVENTS_MAX = 50  # the Machines API's maximum page of events
WAIT_MAX_S = 60  # the wait endpoint's longest timeout


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


@dataclass
class CertificateList:
    """The app's certificates (summaries), gathered over ``next_cursor`` pages."""

    certificates: list[dict[str, Any]] = field(default_factory=list)
    total_count: int | None = None
    pages: int = 0
    truncated: bool = False  # the page cap was reached before the last page

    @property
    def hostnames(self) -> list[str]:
        return [str(c.get("hostname", "")) for c in self.certificates]


class FlyMachines:
    """The Machines API for one app."""

    def __init__(self, session: Session, app: str, *, token: str, base_url: str,
                 timeout: float | None = None) -> None:
        if session.mode != "replay" and not token:
            raise NotConfigured("Fly Machines API", "FLY_API_TOKEN",
                                hint="create one with `fly tokens create readonly` and export it")
        self.session, self.app = session, app
        headers = {"Authorization": auth_header(token)} if token else {}
        self.client = session.client(SYSTEM, base_url=base_url.rstrip("/") + "/v1",
                                     headers=headers, timeout=timeout)

    def _path(self, *parts: str) -> str:
        return "/apps/" + "/".join(quote(p, safe="") for p in (self.app, *parts))

    def _get(self, path: str, op: str, **kwargs: Any) -> Any:
        return call_json(self.session, self.client, "GET", path, system=SYSTEM, op=op, **kwargs)

    # ------------------------------------------------------------------ machines (read)
    def list_machines(self) -> list[dict[str, Any]]:
        return self._get(self._path("machines"), "list_machines")

    def get_machine(self, machine_id: str) -> dict[str, Any]:
        return self._get(self._path("machines", machine_id), "get_machine")

    def events(self, machine_id: str, limit: int = EVENTS_MAX) -> list[dict[str, Any]]:
        """The machine's recent events, newest first (the API caps ``limit`` at 50)."""
        limit = max(1, min(int(limit), EVENTS_MAX))
        return self._get(self._path("machines", machine_id, "events"), "machine_events",
                         params={"limit": limit})

    def wait(self, machine_id: str, state: str = "started", *, timeout_s: int = WAIT_MAX_S,
             instance_id: str = "") -> dict[str, Any]:
        """Block (server side, at most ``timeout_s``) until the machine reaches ``state``.

        Raises SourceError when the machine does not get there in time (Fly answers 408).
        """
        timeout_s = max(1, min(int(timeout_s), WAIT_MAX_S))
        params: dict[str, Any] = {"state": state, "timeout": timeout_s}
        if instance_id:
            params["instance_id"] = instance_id
        # The read timeout must outlast the server's own wait.
        return self._get(self._path("machines", machine_id, "wait"), "wait_machine",
                         params=params, timeout=timeout_s + 10.0, retries=0)

    # ------------------------------------------------------------------ certificates (read)
    def list_certificates(self, *, page_size: int = 50, max_pages: int = 10) -> CertificateList:
        """Every certificate summary of the app, following ``next_cursor`` up to ``max_pages``."""
        out = CertificateList()
        cursor = ""
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = self._get(self._path("certificates"), "list_certificates", params=params)
            if not isinstance(page, dict) or not isinstance(page.get("certificates", []), list):
                raise _protocol(self, "list_certificates", page,
                                'expected {"certificates": [...]}')
            out.certificates.extend(page.get("certificates") or [])
            out.total_count = page.get("total_count", out.total_count)
            out.pages += 1
            cursor = str(page.get("next_cursor") or "")
            if not cursor or cursor in seen:
                return out
            if out.pages >= max_pages:
                out.truncated = True
                return out
            seen.add(cursor)

    def certificate(self, hostname: str) -> dict[str, Any]:
        """The certificate detail of one hostname (SourceNotFound when not on the app)."""
        return self._get(self._path("certificates", hostname), "get_certificate")

    # ------------------------------------------------------------------ mutating
    # Only ever called by executors of a confirmed plan (opslib.actions).
    def _send(self, method: str, path: str, op: str, **kwargs: Any) -> Any:
        return call_json(self.session, self.client, method, path, system=SYSTEM, op=op,
                         idempotent=False, **kwargs)

    def restart(self, machine_id: str) -> Any:
        return self._send("POST", self._path("machines", machine_id, "restart"), "restart_machine")

    def stop(self, machine_id: str) -> Any:
        return self._send("POST", self._path("machines", machine_id, "stop"), "stop_machine",
                          json={})

    def start(self, machine_id: str) -> Any:
        return self._send("POST", self._path("machines", machine_id, "start"), "start_machine")

    def update_machine(self, machine_id: str, config: dict[str, Any]) -> dict[str, Any]:
        """Replace the machine's config (the API takes the *full* config, not a patch)."""
        return self._send("POST", self._path("machines", machine_id), "update_machine",
                          json={"config": config})

    def check_certificate(self, hostname: str) -> dict[str, Any]:
        """Re-run DNS validation (and ACME issuance if due) for ``hostname``."""
        return self._send("POST", self._path("certificates", hostname, "check"),
                          "check_certificate")

    def add_certificate(self, hostname: str) -> dict[str, Any]:
        """Add ``hostname`` to the app and start Let's Encrypt issuance (``fly certs add``)."""
        return self._send("POST", self._path("certificates", "acme"), "add_certificate",
                          json={"hostname": hostname})

    def remove_certificate(self, hostname: str) -> dict[str, Any]:
        """Remove ``hostname`` and all its certificates from the app (``fly certs remove``)."""
        response = call(self.session, self.client, "DELETE", self._path("certificates", hostname),
                        system=SYSTEM, op="remove_certificate", idempotent=False)
        return {"removed": hostname, "status": response.status_code}


def _protocol(fly: FlyMachines, op: str, body: Any, expected: str) -> SourceError:
    return SourceProtocolError(f"{SYSTEM}: {op} answered {str(body)[:120]!r}; {expected}",
                               system=SYSTEM, target=str(fly.client.base_url),
                               hint="the endpoint is not the Machines API; check FLY_FLAPS_BASE_URL")


def list_app_machines(session: Session, target: "Target", *,
                      hint: str = "create one with `fly tokens create readonly`"
                      ) -> tuple[list[dict[str, Any]] | None, SourceError | None,
                                 NotConfigured | None]:
    """The target app's machines, as ``(machines, error, skipped)``: exactly one is set.

    Whether ``FLY_API_TOKEN`` was set is recorded, so a replay skips when the live run did.
    """
    token = target.env("FLY_API_TOKEN")
    if not session.configured("FLY_API_TOKEN", bool(token)):
        return None, None, NotConfigured("Fly Machines API", "FLY_API_TOKEN", hint=hint)
    try:
        return FlyMachines(session, target.app, token=token,
                           base_url=target.env("FLY_FLAPS_BASE_URL")).list_machines(), None, None
    except SourceError as exc:
        return None, exc, None


def machines_client(run: "Run") -> FlyMachines:
    """The Machines API client for a run's live target (used by executors)."""
    return FlyMachines(run.session, run.app, token=run.target.env("FLY_API_TOKEN"),
                       base_url=run.target.env("FLY_FLAPS_BASE_URL"))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, ``None`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --------------------------------------------------------------------------- executors
@executor("machine.start")
def _apply_start(run: "Run", action: Action) -> Any:
    return machines_client(run).start(action.params["machine_id"])


@executor("machine.restart")
def _apply_restart(run: "Run", action: Action) -> Any:
    return machines_client(run).restart(action.params["machine_id"])


@executor("machine.stop")
def _apply_stop(run: "Run", action: Action) -> Any:
    return machines_client(run).stop(action.params["machine_id"])


@executor("machine.update")
def _apply_update(run: "Run", action: Action) -> Any:
    """Read the machine's current config, apply ``config_patch``, send the full config back.

    A started machine is waited for until it is started again on its new version, so a plan
    that updates several machines rolls through them one at a time and stops at the first
    one that does not come back.
    """
    fly = machines_client(run)
    mid = str(action.params["machine_id"])
    patch = action.params.get("config_patch") or {}
    current = fly.get_machine(mid)
    config = current.get("config")
    if current.get("host_status", "ok") != "ok" or not isinstance(config, dict):
        raise OpsError(f"machine {mid}: its host is {current.get('host_status')!r} and only a "
                       "partial config is known; not updated (sending it back would lose "
                       "settings)", hint="retry when `fly machine status` shows the host ok")
    updated = fly.update_machine(mid, merge_patch(config, patch))
    result: dict[str, Any] = {"machine_id": mid, "config_patch": patch,
                              "instance_id": (updated or {}).get("instance_id")}
    if current.get("state") == "started":
        fly.wait(mid, "started", instance_id=str(result["instance_id"] or ""))
        result["state"] = "started"
    return result


def _cert_summary(detail: Any) -> dict[str, Any]:
    detail = detail if isinstance(detail, dict) else {}
    return {"hostname": detail.get("hostname"), "status": detail.get("status"),
            "configured": detail.get("configured"),
            "validation_errors": [e.get("message", "") for e in detail.get("validation_errors") or []
                                  if isinstance(e, dict)]}


@executor("cert.check")
def _apply_cert_check(run: "Run", action: Action) -> Any:
    return _cert_summary(machines_client(run).check_certificate(action.params["hostname"]))


@executor("cert.readd")
def _apply_cert_readd(run: "Run", action: Action) -> Any:
    """``fly certs remove`` then ``fly certs add``: a fresh Let's Encrypt order for the host."""
    fly = machines_client(run)
    host = str(action.params["hostname"])
    fly.remove_certificate(host)
    try:
        added = fly.add_certificate(host)
    except SourceError as exc:
        raise OpsError(f"{host} was REMOVED from {run.app} but adding it back failed: "
                       f"{exc.message}", hint=f"add it now: fly certs add {host} -a {run.app}"
                       ) from exc
    return {"removed": host, **_cert_summary(added)}


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


def events_frame(events_by_machine: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """One row per machine event, newest first (columns: EVENT_COLUMNS).

    ``timestamp`` is the event's epoch-ms time as a UTC datetime; exit data is read from
    either place flyd puts it (``request.exit_event`` or ``request.MonitorEvent.exit_event``).
    """
    rows = []
    for mid, events in events_by_machine.items():
        for ev in events or []:
            if not isinstance(ev, dict):
                continue
            ee = exit_event(ev) or {}
            req = ev.get("request") if isinstance(ev.get("request"), dict) else {}
            rows.append({
                "machine": mid, "timestamp": parse_time(ev.get("timestamp")),
                "type": ev.get("type", ""), "status": ev.get("status", ""),
                "source": ev.get("source", ""),
                "exit_code": ee.get("exit_code") if ee else None,
                "oom_killed": bool(ee.get("oom_killed")) if ee else False,
                "requested_stop": bool(ee.get("requested_stop")) if ee else False,
                "restart_count": int(req.get("restart_count") or 0),
            })
    df = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    return df.sort_values("timestamp", ascending=False, kind="stable").reset_index(drop=True)


def certificates_frame(certs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per certificate summary (columns: CERT_COLUMNS)."""
    rows = []
    for c in certs:
        validation = c.get("validation") if isinstance(c.get("validation"), dict) else {}

        def flag(summary_key: str, detail_key: str) -> Any:
            return c.get(summary_key, validation.get(detail_key))

        rows.append({
            "hostname": c.get("hostname", ""), "status": c.get("status", ""),
            "configured": c.get("configured"), "acme_requested": c.get("acme_requested"),
            "dns_configured": flag("acme_dns_configured", "dns_configured"),
            "alpn_configured": flag("acme_alpn_configured", "alpn_configured"),
            "http_configured": flag("acme_http_configured", "http_configured"),
            "ownership_txt_configured": flag("ownership_txt_configured",
                                             "ownership_txt_configured"),
            "has_fly_certificate": c.get("has_fly_certificate"),
            "has_custom_certificate": c.get("has_custom_certificate"),
            "created_at": c.get("created_at", ""), "updated_at": c.get("updated_at", ""),
        })
    return pd.DataFrame(rows, columns=CERT_COLUMNS)


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
