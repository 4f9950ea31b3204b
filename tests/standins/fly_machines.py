"""STAND-IN for the Fly Machines API (api.machines.dev/v1), reference §1.

Strict: every request needs ``Authorization: Bearer <token>`` (or ``FlyV1 <token>`` for
macaroon tokens); anything else gets 401 with Fly's ``{"error": …}`` body. Unknown apps get
404. Every request is recorded; ``mutations`` lists the ones that would change something.
"""
from __future__ import annotations

import re
from typing import Any

from tests.servers import LocalHTTPServer, Reply, Request

MUTATING = ("POST", "PUT", "PATCH", "DELETE")


class FlyMachinesStandIn(LocalHTTPServer):
    def __init__(self, token: str, apps: dict[str, list[dict[str, Any]]]) -> None:
        self.token = token
        self.apps = apps
        super().__init__(self._handle)

    @property
    def mutations(self) -> list[Request]:
        return [r for r in self.requests if r.method in MUTATING]

    def _expected_auth(self) -> str:
        parts = self.token.split(",")
        scheme = "FlyV1" if any(p.strip().startswith(("fm1r_", "fm1a_", "fm2_")) for p in parts) else "Bearer"
        return f"{scheme} {self.token}"

    def _handle(self, req: Request) -> Reply:
        if req.headers.get("authorization") != self._expected_auth():
            return Reply(401, {"error": "You must be authenticated to view this."})
        m = re.match(r"^/v1/apps/([^/]+)/machines(?:/([^/?]+))?(?:/([a-z]+))?(?:\?.*)?$", req.path)
        if not m:
            return Reply(404, {"error": "not found"})
        app, mid, verb = m.groups()
        if app not in self.apps:
            return Reply(404, {"error": f"app {app} not found"})
        machines = self.apps[app]
        if mid is None:
            return Reply(200, machines) if req.method == "GET" else Reply(405, {"error": "method not allowed"})
        machine = next((x for x in machines if x["id"] == mid), None)
        if machine is None:
            return Reply(404, {"error": f"machine {mid} not found"})
        if verb is None and req.method == "GET":
            return Reply(200, machine)
        if verb == "events" and req.method == "GET":
            return Reply(200, machine.get("events", []))
        if verb in ("restart", "stop", "start") and req.method == "POST":
            previous = machine["state"]
            machine["state"] = {"restart": "started", "stop": "stopped", "start": "started"}[verb]
            return Reply(200, {"ok": True} if verb != "start" else
                         {"message": "", "status": "started", "previous_state": previous})
        return Reply(404, {"error": "not found"})
