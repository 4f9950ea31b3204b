"""STAND-INS for Supabase's hosted services and the status pages (reference §5).

* :class:`SupabaseGatewayStandIn` — the project gateway (Kong in front of GoTrue): every
  request needs ``apikey: <one of the project's keys>``; none → 401 ``{"message":"No API key found in
  request"}``, a wrong one → 401 ``{"message":"Invalid API key","hint":…}``. ``date_skew_s``
  shifts its ``Date`` header, to play a server with a wrong clock.
* :class:`SupabaseManagementStandIn` — ``api.supabase.com``: ``Authorization: Bearer sbp_…``;
  a wrong/missing token → 401, a token whose account cannot see the project → 403, an unknown
  project → 404. (Body wordings for 401/403/404 are as commonly observed, not from source.)
* :class:`StatuspageStandIn` — a public Statuspage v2 site (``/api/v2/summary.json``) and
  Fly's incidents feed (``/v1/incidents``).

All record every request; ``mutations`` lists those that would change something.
"""
from __future__ import annotations

import email.utils
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers import LocalHTTPServer, Reply, Request

NO_KEY = {"message": "No API key found in request"}
BAD_KEY = {"message": "Invalid API key",
           "hint": "Double check your Supabase `anon` or `service_role` API key."}


def skew_dates(server: LocalHTTPServer, skew_s: float) -> None:
    """Make ``server`` send a ``Date`` header ``skew_s`` seconds off (its handler class is
    private to the instance, so this touches no other server)."""
    def date_time_string(self: Any, timestamp: float | None = None) -> str:
        return email.utils.formatdate((timestamp or time.time()) + skew_s, usegmt=True)

    server.server.RequestHandlerClass.date_time_string = date_time_string


class SupabaseGatewayStandIn(LocalHTTPServer):
    def __init__(self, *anon_keys: str, date_skew_s: float = 0.0, auth_status: int = 200) -> None:
        self.anon_keys = set(anon_keys)
        self.auth_status = auth_status
        super().__init__(self._handle)
        skew_dates(self, date_skew_s)

    @property
    def mutations(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def _handle(self, req: Request) -> Reply:
        key = req.headers.get("apikey")
        if not key:
            return Reply(401, NO_KEY)
        if key not in self.anon_keys:
            return Reply(401, BAD_KEY)
        if req.path == "/auth/v1/health" and req.method == "GET":
            if self.auth_status != 200:
                return Reply(self.auth_status, {"message": "An invalid response was received "
                                                           "from the upstream server"})
            return Reply(200, {"version": "v2.177.0", "name": "GoTrue",
                               "description": "GoTrue is a user registration and authentication API"})
        return Reply(404, {"message": "no Route matched with those values"})


class SupabaseManagementStandIn(LocalHTTPServer):
    """``projects`` maps ref → {"project", "health", "pooler", "backups", "bans"} bodies;
    ``visible`` lists the refs the token's account may see (default: all)."""

    READS = ("/network-bans/retrieve",)  # POST, but a read

    def __init__(self, token: str, projects: dict[str, dict[str, Any]],
                 visible: list[str] | None = None) -> None:
        self.token = token
        self.projects = projects
        self.visible = list(projects) if visible is None else visible
        super().__init__(self._handle)

    @property
    def mutations(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"
                and not urlsplit(r.path).path.endswith(self.READS)]

    def _handle(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "Unauthorized"})
        url = urlsplit(req.path)
        m = re.match(r"^/v1/projects/([^/]+)(/.*)?$", url.path)
        if not m:
            return Reply(404, {"message": "Cannot GET " + url.path})
        ref, rest = m.group(1), m.group(2) or ""
        if ref not in self.projects:
            return Reply(404, {"message": f"Project {ref} not found"})
        if ref not in self.visible:
            return Reply(403, {"message": "Your account does not have the necessary privileges "
                                          "to access this endpoint. For more details, refer to "
                                          "our documentation https://supabase.com/docs/guides/"
                                          "platform/access-control"})
        p = self.projects[ref]
        routes = {("GET", ""): "project", ("GET", "/health"): "health",
                  ("GET", "/config/database/pooler"): "pooler",
                  ("GET", "/database/backups"): "backups",
                  ("POST", "/network-bans/retrieve"): "bans"}
        what = routes.get((req.method, rest))
        if what is None or what not in p:
            return Reply(404, {"message": f"Cannot {req.method} {url.path}"})
        if what == "health":
            asked = parse_qs(url.query).get("services", [])
            if not asked:
                return Reply(400, {"message": "services must be provided"})
            return Reply(200, [s for s in p["health"] if s["name"] in asked])
        return Reply(200, p[what])


class StatuspageStandIn(LocalHTTPServer):
    """``summary`` is served at ``/api/v2/summary.json``; ``incidents`` at ``/v1/incidents``."""

    def __init__(self, summary: dict[str, Any] | None = None,
                 incidents: list[dict[str, Any]] | None = None) -> None:
        self.summary = summary
        self.incidents = incidents
        super().__init__(self._handle)

    @property
    def mutations(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def _handle(self, req: Request) -> Reply:
        path = urlsplit(req.path).path
        if path == "/api/v2/summary.json" and self.summary is not None:
            return Reply(200, self.summary)
        if path == "/v1/incidents" and self.incidents is not None:
            return Reply(200, {"incidents": self.incidents})
        return Reply(404, "Not Found")
