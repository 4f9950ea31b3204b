"""STAND-IN for the Fly Machines API (api.machines.dev/v1), reference §1.

Strict: every request needs ``Authorization: Bearer <token>`` (or ``FlyV1 <token>`` for
macaroon tokens); anything else gets 401 with Fly's ``{"error": …}`` body. A *read-only* token
may read but gets 403 on anything mutating; a *foreign* token is valid but has no access to
these apps (403 everywhere). Unknown apps, machines and hostnames get 404. Every request is
recorded; ``mutations`` lists the ones that would change something.

Speaks: machines (list, get, events ``?limit`` ≤ 50, wait, restart, stop, start, update with
the full config, lease acquire/release) and certificates (list with ``limit``/``cursor``,
detail, check, ACME add, remove).

Behaves as flaps does: an update of a *stopped* machine boots it unless the body says
``"skip_launch": true`` (``fly deploy`` sets it for machines that were not running; ``fly
machine update --skip-start``); a machine under a lease (``POST …/lease`` →
``data.nonce``) refuses any change without that nonce in ``fly-machine-lease-nonce``
(409, as flaps answers), and ``DELETE …/lease`` with the nonce releases it.
"""
from __future__ import annotations

import copy
import json
import re
import secrets
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from tests.servers import LocalHTTPServer, Reply, Request

MUTATING = ("POST", "PUT", "PATCH", "DELETE")
UNAUTHENTICATED = {"error": "You must be authenticated to view this."}


def scheme_for(token: str) -> str:
    parts = token.split(",")
    return "FlyV1" if any(p.strip().startswith(("fm1r_", "fm1a_", "fm2_")) for p in parts) else "Bearer"


class FlyMachinesStandIn(LocalHTTPServer):
    def __init__(self, token: str, apps: dict[str, list[dict[str, Any]]], *,
                 certificates: dict[str, dict[str, dict[str, Any]]] | None = None,
                 readonly_tokens: Iterable[str] = (), foreign_tokens: Iterable[str] = ()) -> None:
        self.token = token
        self.apps = apps
        self.certificates = certificates if certificates is not None else {}
        self.readonly = set(readonly_tokens)
        self.foreign = set(foreign_tokens)
        self.leases: dict[str, str] = {}  # machine id -> nonce
        self.secrets_version = 0  # the app's newest secrets version (fly_secrets stand-in)
        super().__init__(self._handle)

    @property
    def mutations(self) -> list[Request]:
        return [r for r in self.requests if r.method in MUTATING]

    @property
    def updates(self) -> list[Request]:
        """The config updates (``POST /v1/apps/<app>/machines/<id>``) among the mutations."""
        return [r for r in self.mutations
                if re.fullmatch(r"/v1/apps/[^/]+/machines/[^/?]+", urlsplit(r.path).path)]


    def _who(self, header: str | None) -> str | None:
        for tok, role in ([(self.token, "admin")] + [(t, "readonly") for t in self.readonly]
                          + [(t, "foreign") for t in self.foreign]):
            if header == f"{scheme_for(tok)} {tok}":
                return role
        return None

    def _handle(self, req: Request) -> Reply:
        role = self._who(req.headers.get("authorization"))
        if role is None:
            return Reply(401, UNAUTHENTICATED)
        url = urlsplit(req.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        m = re.match(r"^/v1/apps/([^/]+)/(machines|certificates)(?:/(.*))?$", url.path)
        if not m:
            return Reply(404, {"error": "not found"})
        app, kind, rest = unquote(m.group(1)), m.group(2), m.group(3)
        if role == "foreign":
            return Reply(403, {"error": f"unauthorized: this token has no access to app {app}"})
        if role == "readonly" and req.method in MUTATING:
            return Reply(403, {"error": "unauthorized: read-only token cannot change machines"})
        if app not in self.apps:
            return Reply(404, {"error": f"app {app} not found"})
        if kind == "machines":
            return self._machines(req, app, rest, query)
        return self._certificates(req, app, rest, query)

    # ------------------------------------------------------------------ machines
    def _machines(self, req: Request, app: str, rest: str | None, query: dict) -> Reply:
        machines = self.apps[app]
        if rest is None:
            return Reply(200, machines) if req.method == "GET" else Reply(405, {"error": "method not allowed"})
        mid, _, verb = rest.partition("/")
        machine = next((x for x in machines if x["id"] == mid), None)
        if machine is None:
            return Reply(404, {"error": f"machine {mid} not found"})
        if not verb and req.method == "GET":
            return Reply(200, machine)
        held = self.leases.get(mid)
        if verb == "lease":
            return self._lease(req, mid, held)
        if req.method in MUTATING and held and req.headers.get("fly-machine-lease-nonce") != held:
            return Reply(409, {"error": f"lease currently held by another owner for {mid}"})
        if not verb and req.method == "POST":
            return self._update(req, machine)
        if verb == "events" and req.method == "GET":
            limit = int(query.get("limit", 20))
            if not 1 <= limit <= 50:
                return Reply(400, {"error": "limit must be between 1 and 50"})
            return Reply(200, machine.get("events", [])[:limit])
        if verb == "wait" and req.method == "GET":
            if query.get("state") not in ("started", "stopped", "suspended", "destroyed", "settled"):
                return Reply(400, {"error": "invalid state"})
            if machine["state"] == query["state"] or query["state"] == "settled":
                return Reply(200, {"ok": True})
            return Reply(408, {"error": f"deadline_exceeded: machine is {machine['state']}, "
                                        f"not {query['state']}"})
        if verb in ("restart", "stop", "start") and req.method == "POST":
            previous = machine["state"]
            machine["state"] = {"restart": "started", "stop": "stopped", "start": "started"}[verb]
            return Reply(200, {"ok": True} if verb != "start" else
                         {"message": "", "status": "started", "previous_state": previous})
        return Reply(404, {"error": "not found"})

    def _lease(self, req: Request, mid: str, held: str | None) -> Reply:
        if req.method == "POST":
            if held and req.headers.get("fly-machine-lease-nonce") != held:
                return Reply(409, {"error": f"lease currently held for {mid}"})
            nonce = held or secrets.token_hex(8)
            self.leases[mid] = nonce
            return Reply(200, {"status": "success",
                               "data": {"nonce": nonce, "expires_at": 0, "owner": "test",
                                        "description": "", "version": "1"}})
        if req.method == "DELETE":
            if held and req.headers.get("fly-machine-lease-nonce") != held:
                return Reply(409, {"error": "lease nonce does not match"})
            self.leases.pop(mid, None)
            return Reply(200, {})
        return Reply(405, {"error": "method not allowed"})

    def _update(self, req: Request, machine: dict[str, Any]) -> Reply:
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            return Reply(400, {"error": "invalid JSON body"})
        config = body.get("config") if isinstance(body, dict) else None
        # The API replaces the config wholesale: a partial one would drop settings.
        if not isinstance(config, dict) or not isinstance(config.get("image"), str) \
                or not isinstance(config.get("guest"), dict):
            return Reply(400, {"error": "invalid machine config: image and guest are required"})
        wanted = body.get("min_secrets_version")
        if wanted is not None and wanted > self.secrets_version:
            return Reply(412, {"error": f"min_secrets_version {wanted} is not yet available on "
                                        "this app"})
        if wanted is not None:
            machine["secrets_version"] = wanted  # what the stand-in boots it with
        machine["config"] = copy.deepcopy(config)
        tag = config["image"].rsplit(":", 1)[-1]
        machine.setdefault("image_ref", {})["tag"] = tag
        machine["instance_id"] = f"{machine.get('instance_id', 'I')}-u"
        if machine["state"] in ("stopped", "suspended", "created") and not body.get("skip_launch"):
            machine["state"] = "started"  # flaps boots a stopped machine on update
        return Reply(200, machine)

    # ------------------------------------------------------------------ certificates
    def _certificates(self, req: Request, app: str, rest: str | None, query: dict) -> Reply:
        certs = self.certificates.setdefault(app, {})
        if rest is None:
            if req.method != "GET":
                return Reply(405, {"error": "method not allowed"})
            hosts = sorted(certs)
            limit = int(query.get("limit", 50))
            start = hosts.index(query["cursor"]) if query.get("cursor") in hosts else 0
            page = hosts[start:start + limit]
            nxt = hosts[start + limit] if start + limit < len(hosts) else None
            return Reply(200, {"certificates": [summary(certs[h]) for h in page],
                               "next_cursor": nxt, "total_count": len(hosts)})
        if rest == "acme" and req.method == "POST":
            try:
                host = json.loads(req.body or b"{}").get("hostname")
            except (ValueError, AttributeError):
                host = None
            if not isinstance(host, str) or not host:
                return Reply(400, {"error": "hostname is required"})
            if host in certs:
                return Reply(422, {"error": f"hostname {host} already exists on app"})
            certs[host] = new_certificate(host, app)
            return Reply(201, certs[host])
        host, _, verb = rest.partition("/")
        host = unquote(host)
        if host not in certs:
            return Reply(404, {"error": f"certificate for {host} not found"})
        if not verb and req.method == "GET":
            return Reply(200, certs[host])
        if not verb and req.method == "DELETE":
            del certs[host]
            return Reply(200, {})
        if verb == "check" and req.method == "POST":
            detail = copy.deepcopy(certs[host])
            detail["dns_records"] = {"a": [], "aaaa": [], "cname": [f"{app}.fly.dev"],
                                     "resolved_addresses": []}
            return Reply(200, detail)
        return Reply(404, {"error": "not found"})


def summary(detail: dict[str, Any]) -> dict[str, Any]:
    """The CertificateSummary of a detail, as the list endpoint returns it."""
    v = detail.get("validation") or {}
    certs = detail.get("certificates") or []
    return {"hostname": detail["hostname"], "status": detail.get("status"),
            "configured": detail.get("configured"),
            "acme_dns_configured": v.get("dns_configured"),
            "acme_alpn_configured": v.get("alpn_configured"),
            "acme_http_configured": v.get("http_configured"),
            "ownership_txt_configured": v.get("ownership_txt_configured"),
            "acme_requested": detail.get("acme_requested"),
            "has_custom_certificate": any(c.get("source") == "custom" for c in certs),
            "has_fly_certificate": any(c.get("source") == "fly" for c in certs),
            "created_at": detail.get("created_at", ""), "updated_at": detail.get("updated_at", "")}


def new_certificate(host: str, app: str) -> dict[str, Any]:
    """What ``fly certs add`` creates: ACME requested, awaiting DNS validation."""
    return {"hostname": host, "configured": False, "acme_requested": True,
            "status": "pending_validation", "rate_limited_until": None, "certificates": [],
            "validation": {"dns_configured": False, "alpn_configured": False,
                           "http_configured": False, "ownership_txt_configured": False},
            "dns_requirements": {"a": ["66.241.124.10"], "aaaa": ["2a09:8280:1::1:abcd"],
                                 "cname": f"{app}.fly.dev",
                                 "acme_challenge": {"name": f"_acme-challenge.{host}",
                                                    "target": f"{host}.x1y2.flydns.net"}},
            "validation_errors": [], "created_at": "", "updated_at": ""}


def leased_update(app: str, mid: str) -> list[tuple[str, str]]:
    """The requests of one machine update as flyctl makes them: lease, update, release."""
    base = f"/v1/apps/{app}/machines/{mid}"
    return [("POST", f"{base}/lease"), ("POST", base), ("DELETE", f"{base}/lease")]
