"""STAND-IN for Fly app secrets on the Machines API host (reference §1 "Secrets"), on top of
the Machines stand-in.

``GET /v1/apps/{app}/secrets`` → ``{"secrets": [{"name","digest","created_at","updated_at"}]}``
(a ``value`` only with ``show_secrets=true``); ``POST /v1/apps/{app}/secrets`` with
``{"values": {"NAME": "value"|null}}`` sets (null deletes) and answers ``{"secrets": [{"name",
"digest"}], "version"}`` as fly-go's ``UpdateAppSecrets`` expects. ``received`` keeps the
values each POST carried, so tests can check exactly what was sent.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers import Reply, Request
from tests.standins.fly_machines import FlyMachinesStandIn


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class FlySecretsStandIn(FlyMachinesStandIn):
    def __init__(self, token: str, apps: dict[str, list[dict[str, Any]]],
                 secrets: dict[str, dict[str, str]], *, extra_fields: dict[str, Any] | None = None) -> None:
        self.secrets = secrets
        self.version = 1
        self.received: list[dict[str, Any]] = []
        self.extra_fields = extra_fields or {}  # e.g. a misbehaving API adding fields
        super().__init__(token, apps)
        self.secrets_version = self.version

    def _handle(self, req: Request) -> Reply:
        url = urlsplit(req.path)
        m = re.match(r"^/v1/apps/([^/]+)/secrets$", url.path)
        if not m:
            return super()._handle(req)
        role = self._who(req.headers.get("authorization"))
        if role is None:
            return Reply(401, {"error": "You must be authenticated to view this."})
        if role == "foreign":
            return Reply(403, {"error": "unauthorized: this token has no access to this app"})
        if role == "readonly" and req.method != "GET":
            return Reply(403, {"error": "unauthorized: read-only token cannot change secrets"})
        app = m.group(1)
        if app not in self.secrets:
            return Reply(404, {"error": f"app {app} not found"})
        store = self.secrets[app]
        if req.method == "GET":
            show = parse_qs(url.query).get("show_secrets") == ["true"]
            return Reply(200, {"secrets": [
                {"name": n, "digest": digest(v), "created_at": "2025-03-02T09:12:44Z",
                 "updated_at": "2025-09-14T16:03:10Z", **self.extra_fields,
                 **({"value": v} if show else {})} for n, v in sorted(store.items())]})
        if req.method == "POST":
            values = json.loads(req.body or b"{}").get("values")
            if not isinstance(values, dict):
                return Reply(400, {"error": "values is required"})
            self.received.append(values)
            for name, value in values.items():
                if value is None:
                    store.pop(name, None)
                else:
                    store[name] = value
            self.version += 1
            self.secrets_version = self.version  # machines may now ask for it
            return Reply(200, {"secrets": [{"name": n, "digest": digest(store[n])}
                                           for n in sorted(values) if n in store],
                               "version": self.version})
        return Reply(405, {"error": "method not allowed"})
