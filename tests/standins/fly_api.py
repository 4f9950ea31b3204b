"""STAND-IN for Fly's platform API (api.fly.io), reference §1 "Releases" and §2 logs.

Strict like the Machines stand-in: ``Authorization`` must carry the token with the scheme the
reference prescribes (401 ``{"error": …}`` otherwise); a *foreign* token is valid but has no
access to these apps (403). Unknown apps are 404 on REST and a ``NOT_FOUND`` GraphQL error.

* ``GET /api/v1/apps/{app}/releases?limit=N`` → ``{"releases": [...]}`` (flyctl's REST shape);
  ``rest=False`` answers 404 like a host without that undocumented endpoint.
* ``POST /graphql`` with the ``releasesUnprocessed`` query → GraphQL nodes of the same releases.
* ``GET /api/v1/apps/{app}/logs?next_token=…`` → JSON:API pages of ``page_size`` entries
  after the token (a Unix time in ns); without a token the last ``page_size`` entries.
  ``int_tokens=True`` sends ``next_token`` as a bare integer; ``endless=True`` never stops
  giving a fresh page with an advancing token (pagination that never ends).

``mutations`` lists requests that would change something (GraphQL mutations, non-GET REST).
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from opslib.times import iso, parse_time
from tests.servers import LocalHTTPServer, Reply, Request
from tests.standins.fly_machines import UNAUTHENTICATED, scheme_for


def ns(ts: str | datetime) -> int:
    dt = parse_time(ts) if isinstance(ts, str) else ts
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


class FlyApiStandIn(LocalHTTPServer):
    def __init__(self, token: str, apps: dict[str, dict[str, Any]], *, rest: bool = True,
                 page_size: int = 100, int_tokens: bool = False, endless: bool = False,
                 foreign_tokens: Iterable[str] = ()) -> None:
        """``apps[name] = {"releases": [REST-shaped release, …], "logs": [attributes, …]}``."""
        self.token, self.apps = token, apps
        self.rest, self.page_size = rest, page_size
        self.int_tokens, self.endless = int_tokens, endless
        self.foreign = set(foreign_tokens)
        super().__init__(self._handle)

    @property
    def mutations(self) -> list[Request]:
        out = []
        for r in self.requests:
            if r.method == "GET":
                continue
            if r.method == "POST" and urlsplit(r.path).path == "/graphql":
                try:
                    q = str(json.loads(r.body).get("query", ""))
                except (ValueError, AttributeError):
                    q = ""
                if not q.lstrip().startswith("mutation"):
                    continue
            out.append(r)
        return out

    def _handle(self, req: Request) -> Reply:
        auth = req.headers.get("authorization")
        if auth in {f"{scheme_for(t)} {t}" for t in self.foreign}:
            return Reply(403, {"error": "Not authorized to access this app"})
        if auth != f"{scheme_for(self.token)} {self.token}":
            return Reply(401, UNAUTHENTICATED)
        url = urlsplit(req.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/graphql" and req.method == "POST":
            return self._graphql(req)
        m = re.match(r"^/api/v1/apps/([^/]+)/(releases|logs)$", url.path)
        if not m or req.method != "GET":
            return Reply(404, {"error": "Not Found"})
        app, what = unquote(m.group(1)), m.group(2)
        if what == "releases" and not self.rest:
            return Reply(404, {"error": "Not Found"})
        if app not in self.apps:
            return Reply(404, {"error": "Could not find App"})
        if what == "releases":
            limit = int(query.get("limit", 25))
            return Reply(200, {"releases": self.apps[app]["releases"][:limit]})
        return self._logs(app, query)

    def _graphql(self, req: Request) -> Reply:
        try:
            body = json.loads(req.body)
            query, variables = body["query"], body.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return Reply(400, {"errors": [{"message": "invalid GraphQL request"}]})
        if "releasesUnprocessed" not in query or not isinstance(variables.get("limit"), int):
            return Reply(200, {"errors": [{"message": "unsupported query in the stand-in"}]})
        app = variables.get("appName")
        if app not in self.apps:
            return Reply(200, {"data": {"app": None}, "errors": [{
                "message": f"Could not find App \"{app}\"", "path": ["app"],
                "extensions": {"code": "NOT_FOUND"}}]})
        nodes = [{"id": r["id"], "version": r["version"],
                  "description": r.get("description", ""), "reason": r.get("reason", "deploy"),
                  "status": r["status"], "imageRef": r["image_ref"], "stable": r["stable"],
                  "user": {"id": "u1", "email": r["user"], "name": r["user"].split("@")[0]},
                  "createdAt": r["created_at"]}
                 for r in self.apps[app]["releases"][:variables["limit"]]]
        return Reply(200, {"data": {"app": {"releases": {"nodes": nodes}}}})

    def _logs(self, app: str, query: dict[str, str]) -> Reply:
        entries = sorted(self.apps[app].get("logs", []), key=lambda e: ns(e["timestamp"]))
        if query.get("instance"):
            entries = [e for e in entries if e.get("instance") == query["instance"]]
        if query.get("region"):
            entries = [e for e in entries if e.get("region") == query["region"]]
        token = query.get("next_token")
        if self.endless:
            start = int(token) if token else ns(entries[0]["timestamp"])
            page = [{**entries[0], "timestamp": iso_ns(start), "message": f"line at {start}"}]
            nxt = start + 1000  # one microsecond later, forever
        elif token:
            page = [e for e in entries if ns(e["timestamp"]) >= int(token)][:self.page_size]
            nxt = ns(page[-1]["timestamp"]) + 1 if page else int(token)
        else:
            page = entries[-self.page_size:]
            nxt = ns(page[-1]["timestamp"]) + 1 if page else 0
        data = [{"id": f"log-{i}", "type": "logs", "attributes": e} for i, e in enumerate(page)]
        return Reply(200, {"data": data,
                           "meta": {"next_token": nxt if self.int_tokens else str(nxt)}})


def iso_ns(value: int) -> str:
    """RFC 3339 with nanoseconds, as Fly prints log timestamps."""
    from datetime import timezone

    seconds, rem = divmod(value, 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem:09d}Z"


def rest_release(version: int, *, status: str = "complete", stable: bool = True,
                 image: str, created_at: str, user: str = "dev@example.com",
                 strategy: str = "ROLLING", in_progress: bool = False) -> dict[str, Any]:
    """One release in flyctl's REST shape (reference §1)."""
    return {"id": f"rel_{version:04d}", "version": version, "stable": stable,
            "in_progress": in_progress, "status": status, "strategy": strategy, "user": user,
            "created_at": created_at, "image_ref": image}


def log_attrs(ts: str, message: str, *, instance: str = "148ed193b95089", region: str = "iad",
              level: str = "info", provider: str = "app") -> dict[str, Any]:
    """The ``attributes`` of one logs-API item (reference §2)."""
    return {"timestamp": ts, "message": message, "level": level, "instance": instance,
            "region": region, "meta": {"event": {"provider": provider}}}


__all__ = ["FlyApiStandIn", "rest_release", "log_attrs", "ns", "iso"]
