"""Fly Machines API client (``https://api.machines.dev/v1``, reference §1).

Reads: machines, one machine, its events, ``wait``, certificates (list, detail), each parsed
into the frozen models of :mod:`opslib.sources.fly_models`. Mutating calls (restart, stop,
start, update, certificate check/add/remove) are only ever made by the ``apply_*`` functions
at the bottom of this module, which :mod:`opslib.executors` registers for the gated
remediation path (:mod:`opslib.actions`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from ..errors import NotConfigured, OpsError, SourceError, SourceProtocolError
from ..reads import Source, require
from ..redact import excerpt
from ..session import Session
from ..times import iso
from .fly_models import (Certificate, CertificateSummary, Machine, MachineEvent, parse_events,
                         parse_machines)
from .http import call, call_json

if TYPE_CHECKING:  # pragma: no cover
    from ..actions import Action, ApplyContext
    from ..config import Target

SYSTEM = "fly-machines"
MACHINE_COLUMNS = ["id", "name", "state", "region", "image", "cpu_kind", "cpus", "memory_mb",
                   "checks_total", "checks_passing", "checks_critical", "last_exit_code",
                   "oom_killed", "restart_count", "last_exit_at", "updated_at", "auto_stopped"]
EVENT_COLUMNS = ["machine", "timestamp", "type", "status", "source", "exit_code", "oom_killed",
                 "requested_stop", "restart_count"]
CERT_COLUMNS = ["hostname", "status", "configured", "acme_requested", "dns_configured",
                "alpn_configured", "http_configured", "ownership_txt_configured",
                "has_fly_certificate", "has_custom_certificate", "created_at", "updated_at"]
EVENTS_MAX = 50  # the Machines API's maximum page of events
WAIT_MAX_S = 60  # the wait endpoint's longest timeout
TOKEN_ENV = "FLY_API_TOKEN"
# flyctl: `fly tokens create readonly` makes an org-scoped read-only token (no -a);
# `fly tokens create deploy -a <app>` an app-scoped one that can also apply plans.
TOKEN_HINT = ("to diagnose: `fly tokens create readonly -o <org>`; to apply plans: "
              "`fly tokens create deploy -a <app>`")


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

    certificates: list[CertificateSummary] = field(default_factory=list)
    total_count: int | None = None
    pages: int = 0
    truncated: bool = False  # the page cap was reached before the last page

    @property
    def hostnames(self) -> list[str]:
        return [c.hostname for c in self.certificates]


class FlyClient:
    """One app's view of a Fly API: a recorded httpx client with the token's scheme.

    Without a token it is :class:`NotConfigured` (replay needs none: the answers are on disk).
    """

    SOURCE = ""  # as shown to users
    SYSTEM = ""  # the session's name for its captures
    PREFIX = ""  # path under base_url

    def __init__(self, session: Session, app: str, *, token: str, base_url: str,
                 timeout: float | None = None) -> None:
        if session.mode != "replay" and not token:
            raise NotConfigured(self.SOURCE, TOKEN_ENV, hint=TOKEN_HINT)
        self.session, self.app = session, app
        headers = {"Authorization": auth_header(token)} if token else {}
        self.client = session.client(self.SYSTEM, base_url=base_url.rstrip("/") + self.PREFIX,
                                     headers=headers, timeout=timeout)


class FlyMachines(FlyClient):
    """The Machines API for one app."""

    SOURCE, SYSTEM, PREFIX = "Fly Machines API", SYSTEM, "/v1"

    def _path(self, *parts: str) -> str:
        return "/apps/" + "/".join(quote(p, safe="") for p in (self.app, *parts))

    def _get(self, path: str, op: str, **kwargs: Any) -> Any:
        return call_json(self.session, self.client, "GET", path, system=SYSTEM, op=op, **kwargs)

    # ------------------------------------------------------------------ machines (read)
    def list_machines(self) -> list[Machine]:
        body = self._get(self._path("machines"), "list_machines")
        if not isinstance(body, list):
            raise _protocol(self, "list_machines", body, "expected a JSON array of machines")
        return parse_machines(body)

    def get_machine(self, machine_id: str) -> Machine:
        body = self._get(self._path("machines", machine_id), "get_machine")
        if not isinstance(body, dict):
            raise _protocol(self, "get_machine", body, "expected a machine object")
        return Machine.from_api(body)

    def events(self, machine_id: str, limit: int = EVENTS_MAX) -> tuple[MachineEvent, ...]:
        """The machine's recent events, newest first (the API caps ``limit`` at 50)."""
        limit = max(1, min(int(limit), EVENTS_MAX))
        body = self._get(self._path("machines", machine_id, "events"), "machine_events",
                         params={"limit": limit})
        if not isinstance(body, list):
            raise _protocol(self, "machine_events", body, "expected a JSON array of events")
        return parse_events(body)

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
            out.certificates.extend(CertificateSummary.from_api(c)
                                    for c in page.get("certificates") or [] if isinstance(c, dict))
            out.total_count = page.get("total_count", out.total_count)
            out.pages += 1
            cursor = str(page.get("next_cursor") or "")
            if not cursor or cursor in seen:
                return out
            if out.pages >= max_pages:
                out.truncated = True
                return out
            seen.add(cursor)

    def certificate(self, hostname: str) -> Certificate:
        """The certificate detail of one hostname (SourceNotFound when not on the app)."""
        return Certificate.from_api(self._get(self._path("certificates", hostname),
                                              "get_certificate"))

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

    def update_machine(self, machine_id: str, config: dict[str, Any], *,
                       skip_launch: bool = False, nonce: str = "",
                       min_secrets_version: int | None = None) -> dict[str, Any]:
        """Replace the machine's config (the API takes the *full* config, not a patch).
        ``skip_launch`` keeps a stopped machine stopped (an update boots it otherwise);
        ``nonce`` is the machine's lease, as flyctl holds one for the update."""
        body: dict[str, Any] = {"config": config}
        if skip_launch:
            body["skip_launch"] = True
        if min_secrets_version is not None:  # boot only with secrets at least this new
            body["min_secrets_version"] = min_secrets_version
        return self._send("POST", self._path("machines", machine_id), "update_machine",
                          json=body, headers={LEASE_HEADER: nonce} if nonce else None)

    def acquire_lease(self, machine_id: str, ttl_s: int = 120) -> str:
        """Take the machine's lease (``POST …/lease``, as flyctl does before changing a
        machine), so no one else changes it meanwhile; the nonce to send with the change."""
        answer = self._send("POST", self._path("machines", machine_id, "lease"), "acquire_lease",
                            json={"ttl": ttl_s, "description": "opslib apply"})
        nonce = ((answer or {}).get("data") or {}).get("nonce") if isinstance(answer, dict) else None
        if not nonce:
            raise _protocol(self, "acquire_lease", answer, 'expected {"data": {"nonce": …}}')
        return str(nonce)

    def release_lease(self, machine_id: str, nonce: str) -> None:
        call(self.session, self.client, "DELETE", self._path("machines", machine_id, "lease"),
             system=SYSTEM, op="release_lease", idempotent=False,
             headers={LEASE_HEADER: nonce})

    def check_certificate(self, hostname: str) -> Certificate:
        """Re-run DNS validation (and ACME issuance if due) for ``hostname``."""
        return Certificate.from_api(self._send("POST", self._path("certificates", hostname,
                                                                   "check"), "check_certificate"))

    def add_certificate(self, hostname: str) -> Certificate:
        """Add ``hostname`` to the app and start Let's Encrypt issuance (``fly certs add``)."""
        return Certificate.from_api(self._send("POST", self._path("certificates", "acme"),
                                               "add_certificate", json={"hostname": hostname}))

    def remove_certificate(self, hostname: str) -> dict[str, Any]:
        """Remove ``hostname`` and all its certificates from the app (``fly certs remove``)."""
        response = call(self.session, self.client, "DELETE", self._path("certificates", hostname),
                        system=SYSTEM, op="remove_certificate", idempotent=False)
        return {"removed": hostname, "status": response.status_code}


LEASE_HEADER = "fly-machine-lease-nonce"


def _protocol(fly: FlyMachines, op: str, body: Any, expected: str) -> SourceError:
    return SourceProtocolError(f"{SYSTEM}: {op} answered {excerpt(body, 120)!r}; {expected}",
                               system=SYSTEM, target=str(fly.client.base_url),
                               hint="the endpoint is not the Machines API; check FLY_FLAPS_BASE_URL")


def connect(session: Session, target: "Target") -> FlyMachines:
    """The Machines API client for the target app, or :class:`NotConfigured`."""
    token, = require(session, target, "Fly Machines API", TOKEN_ENV, hint=TOKEN_HINT)
    return FlyMachines(session, target.app, token=token,
                       base_url=target.env("FLY_FLAPS_BASE_URL"))


MACHINES = Source("Fly Machines API", connect)


def _client(ctx: "ApplyContext") -> FlyMachines:
    """The Machines API client for applying a plan on a live target."""
    return FlyMachines(ctx.session, ctx.target.app, token=ctx.target.env(TOKEN_ENV),
                       base_url=ctx.target.env("FLY_FLAPS_BASE_URL"))


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
# Registered in opslib.executors; each applies one planned action on a live target.
def apply_start(ctx: "ApplyContext", action: "Action") -> Any:
    return _client(ctx).start(action.params["machine_id"])


def apply_restart(ctx: "ApplyContext", action: "Action") -> Any:
    return _client(ctx).restart(action.params["machine_id"])


def apply_stop(ctx: "ApplyContext", action: "Action") -> Any:
    return _client(ctx).stop(action.params["machine_id"])


def update_in_place(fly: FlyMachines, mid: str, patch: dict[str, Any], *,
                    min_secrets_version: int | None = None) -> dict[str, Any]:
    """Read the machine's config, apply ``patch``, send the full config back under the
    machine's lease; a stopped machine stays stopped (as ``fly deploy``), a started one is
    waited for on its new version."""
    current = fly.get_machine(mid)
    if current.host_status != "ok" or current.partial_config:
        raise OpsError(f"machine {mid}: its host is {current.host_status!r} and only a "
                       "partial config is known; not updated (sending it back would lose "
                       "settings)", hint="retry when `fly machine status` shows the host ok")
    stopped = current.state != "started"
    nonce = fly.acquire_lease(mid)
    try:
        updated = fly.update_machine(mid, merge_patch(dict(current.config), patch),
                                     skip_launch=stopped, nonce=nonce,
                                     min_secrets_version=min_secrets_version)
    finally:
        fly.release_lease(mid, nonce)
    result: dict[str, Any] = {"machine_id": mid, "config_patch": patch, "kept_stopped": stopped,
                              "instance_id": (updated or {}).get("instance_id")}
    if not stopped:
        fly.wait(mid, "started", instance_id=str(result["instance_id"] or ""))
        result["state"] = "started"
    return result


def apply_update(ctx: "ApplyContext", action: "Action") -> Any:
    """Apply ``config_patch`` to one machine (see :func:`update_in_place`). A plan that
    updates several machines rolls through them one at a time and stops at the first one that
    does not come back."""
    return update_in_place(_client(ctx), str(action.params["machine_id"]),
                           action.params.get("config_patch") or {})


def _cert_summary(cert: Certificate) -> dict[str, Any]:
    return {"hostname": cert.hostname, "status": cert.status, "configured": cert.configured,
            "validation_errors": [e.message for e in cert.validation_errors]}


def apply_cert_check(ctx: "ApplyContext", action: "Action") -> Any:
    return _cert_summary(_client(ctx).check_certificate(action.params["hostname"]))


def apply_cert_readd(ctx: "ApplyContext", action: "Action") -> Any:
    """``fly certs remove`` then ``fly certs add``: a fresh Let's Encrypt order for the host."""
    fly = _client(ctx)
    host = str(action.params["hostname"])
    fly.remove_certificate(host)
    try:
        added = fly.add_certificate(host)
    except SourceError as exc:
        raise OpsError(f"{host} was REMOVED from {ctx.target.app} but adding it back failed: "
                       f"{exc.message}", hint=f"add it now: fly certs add {host} -a {ctx.target.app}"
                       ) from exc
    return {"removed": host, **_cert_summary(added)}


# --------------------------------------------------------------------------- frames
def events_frame(events_by_machine: dict[str, tuple[MachineEvent, ...]]) -> pd.DataFrame:
    """One row per machine event, newest first (columns: EVENT_COLUMNS)."""
    rows = [{"machine": mid, "timestamp": ev.timestamp, "type": ev.type, "status": ev.status,
             "source": ev.source, "exit_code": ev.exit.exit_code if ev.exit else None,
             "oom_killed": bool(ev.exit and ev.exit.oom_killed),
             "requested_stop": bool(ev.exit and ev.exit.requested_stop),
             "restart_count": ev.restart_count}
            for mid, events in events_by_machine.items() for ev in events]
    df = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    return df.sort_values("timestamp", ascending=False, kind="stable").reset_index(drop=True)


def certificates_frame(certs: list[CertificateSummary]) -> pd.DataFrame:
    """One row per certificate summary (columns: CERT_COLUMNS)."""
    return pd.DataFrame([{k: getattr(c, k) for k in CERT_COLUMNS} for c in certs],
                        columns=CERT_COLUMNS)


def machines_frame(machines: list[Machine]) -> pd.DataFrame:
    """One row per machine with the fields a diagnosis needs (columns: MACHINE_COLUMNS)."""
    rows = []
    for m in machines:
        last = m.last_exit
        rows.append({
            "id": m.id, "name": m.name, "state": m.state, "region": m.region, "image": m.image,
            "cpu_kind": m.guest.cpu_kind, "cpus": m.guest.cpus, "memory_mb": m.guest.memory_mb,
            "checks_total": len(m.checks), "checks_passing": len(m.checks_with("passing")),
            "checks_critical": len(m.checks_with("critical")),
            "last_exit_code": last.exit_code if last else None,
            "oom_killed": bool(last and last.oom_killed), "restart_count": m.restart_count,
            "last_exit_at": iso(last.exited_at) if last and last.exited_at else None,
            "updated_at": m.updated_at, "auto_stopped": m.auto_stopped,
        })
    return pd.DataFrame(rows, columns=MACHINE_COLUMNS)


def checks_frame(machines: list[Machine]) -> pd.DataFrame:
    """One row per health check per machine: machine, name, status, output, updated_at."""
    rows = [{"machine": m.id, "name": c.name, "status": c.status, "output": c.output,
             "updated_at": c.updated_at} for m in machines for c in m.checks]
    return pd.DataFrame(rows, columns=["machine", "name", "status", "output", "updated_at"])


def release_label(machines: list[Machine] | None) -> str:
    """The release(s) the machines run (``fly_release_version``), e.g. ``v42`` or ``v41, v42``."""
    versions = sorted({m.release_version for m in machines or []} - {""},
                      key=lambda v: (len(v), v))
    return ", ".join(f"v{v}" for v in versions)


RELEASE_COLUMNS = ["id", "region", "state", "release", "image", "checks_critical", "updated_at"]


def machine_releases_frame(machines: list[Machine] | None) -> pd.DataFrame:
    """Which release and image each machine runs (columns: RELEASE_COLUMNS)."""
    return pd.DataFrame([{"id": m.id, "region": m.region, "state": m.state,
                          "release": m.release_version, "image": m.image,
                          "checks_critical": len(m.checks_with("critical")),
                          "updated_at": m.updated_at} for m in machines or []],
                        columns=RELEASE_COLUMNS)
