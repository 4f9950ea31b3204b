"""Fly platform API (``https://api.fly.io``, reference §1 "Releases and rollback", §2 logs).

* **Releases**: the REST endpoint flyctl uses (``/api/v1/apps/{app}/releases?limit=N``), falling
  back to the GraphQL query ``fly releases`` sends when REST is missing or answers something
  else than documented. Both are normalised to one shape (:data:`RELEASE_KEYS`).
* **Logs**: ``/api/v1/apps/{app}/logs``, following ``next_token`` page by page until the
  window is covered, with a page cap. Each page is one recorded HTTP exchange, written to the
  run's ``raw/`` as it arrives; :class:`LogStream` yields entries as pages come in, so a
  caller can analyse them without holding every page.

Fly's incidents feed is a status page and lives with the other status pages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator
from urllib.parse import quote

import pandas as pd

from ..errors import (NotConfigured, SourceAuthError, SourceError, SourceNotFound,
                      SourceProtocolError, SourceUnavailable)
from ..session import Session
from ..times import iso, parse_time
from .fly import auth_header
from .http import call_json

SYSTEM = "fly-api"

# fly-go resource_releases.go GetAppReleasesMachines, verbatim (reference §1).
RELEASES_QUERY = """query($appName: String!, $limit: Int!) { app(name: $appName) {
    releases: releasesUnprocessed(first: $limit) { nodes {
      id version description reason status imageRef stable user { id email name } createdAt } } } }"""

RELEASE_KEYS = ["version", "id", "status", "stable", "in_progress", "image_ref", "created_at",
                "user", "strategy", "description", "source"]
LOG_COLUMNS = ["timestamp", "level", "instance", "region", "provider", "message"]
DEFAULT_MAX_PAGES = 20


@dataclass
class Releases:
    """Releases newest first, and where they came from (``rest`` or ``graphql``)."""

    releases: list[dict[str, Any]] = field(default_factory=list)
    source: str = "rest"
    fallback_reason: str = ""  # why REST was not used, when it was not


def _user(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("email") or value.get("name") or value.get("id") or "")
    return str(value or "")


def _int(value: Any) -> int | None:
    try:
        return int(str(value).lstrip("vV"))
    except (TypeError, ValueError):
        return None


def normalise_release(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """One release in the shape of :data:`RELEASE_KEYS`, from REST or GraphQL keys."""
    status = str(raw.get("status") or "")
    created = parse_time(raw.get("created_at", raw.get("createdAt")))
    in_progress = raw.get("in_progress", raw.get("inProgress"))
    return {
        "version": _int(raw.get("version")),
        "id": str(raw.get("id") or ""),
        "status": status,
        "stable": bool(raw.get("stable")),
        "in_progress": bool(in_progress) if in_progress is not None else status == "running",
        "image_ref": str(raw.get("image_ref", raw.get("imageRef")) or ""),
        "created_at": iso(created) if created else None,
        "user": _user(raw.get("user")),
        "strategy": str(raw.get("strategy") or raw.get("deploymentStrategy") or ""),
        "description": str(raw.get("description") or raw.get("reason") or ""),
        "source": source,
    }


def releases_frame(releases: list[dict[str, Any]]) -> pd.DataFrame:
    """Normalised releases as a table, newest first."""
    df = pd.DataFrame(releases, columns=RELEASE_KEYS)
    if df.empty:
        return df
    return df.sort_values("version", ascending=False, kind="stable",
                          na_position="last").reset_index(drop=True)


class FlyPlatform:
    """api.fly.io for one app: releases and logs."""

    def __init__(self, session: Session, app: str, *, token: str, base_url: str,
                 timeout: float | None = None) -> None:
        if session.mode != "replay" and not token:
            raise NotConfigured("Fly platform API", "FLY_API_TOKEN",
                                hint="create one with `fly tokens create readonly` and export it")
        self.session, self.app = session, app
        headers = {"Authorization": auth_header(token)} if token else {}
        self.client = session.client(SYSTEM, base_url=base_url.rstrip("/"), headers=headers,
                                     timeout=timeout)

    def _protocol(self, op: str, body: Any, expected: str) -> SourceProtocolError:
        return SourceProtocolError(
            f"{SYSTEM}: {op} answered {str(body)[:160]!r}; {expected}", system=SYSTEM,
            target=str(self.client.base_url),
            hint="the endpoint is not Fly's platform API; check FLY_API_BASE_URL")

    # ------------------------------------------------------------------ releases
    def releases_rest(self, limit: int = 25) -> list[dict[str, Any]]:
        """``GET /api/v1/apps/{app}/releases?limit=N`` (undocumented; what flyctl uses)."""
        body = call_json(self.session, self.client, "GET",
                         f"/api/v1/apps/{quote(self.app, safe='')}/releases",
                         params={"limit": int(limit)}, system=SYSTEM, op="releases_rest")
        if not isinstance(body, dict) or not isinstance(body.get("releases"), list):
            raise self._protocol("releases_rest", body, 'expected {"releases": [...]}')
        return [normalise_release(r, "rest") for r in body["releases"] if isinstance(r, dict)]

    def graphql(self, query: str, variables: dict[str, Any], op: str) -> dict[str, Any]:
        """One GraphQL query (a read: retried like a GET). GraphQL errors become SourceErrors."""
        body = call_json(self.session, self.client, "POST", "/graphql",
                         json={"query": query, "variables": variables}, system=SYSTEM, op=op,
                         idempotent=True)
        if not isinstance(body, dict):
            raise self._protocol(op, body, 'expected {"data": …}')
        errors = body.get("errors") or []
        if errors:
            first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
            message = str(first.get("message", ""))
            code = str((first.get("extensions") or {}).get("code", "")).upper()
            text = f"{SYSTEM}: {op} GraphQL error: {message}"
            target = str(self.client.base_url) + "/graphql"
            if code == "NOT_FOUND" or "could not find" in message.lower():
                raise SourceNotFound(text, system=SYSTEM, target=target, status=None,
                                     hint="check the app name (fly apps list)")
            if code in ("UNAUTHORIZED", "UNAUTHENTICATED", "FORBIDDEN") or \
                    "authenticated" in message.lower() or "not authorized" in message.lower():
                raise SourceAuthError(text, system=SYSTEM, target=target,
                                      hint="check the token's value and its permissions for "
                                           "this app")
            raise SourceError(text, system=SYSTEM, target=target)
        if not isinstance(body.get("data"), dict):
            raise self._protocol(op, body, 'expected {"data": {…}}')
        return body["data"]

    def releases_graphql(self, limit: int = 25) -> list[dict[str, Any]]:
        """The releases via GraphQL, exactly as ``fly releases`` asks for them."""
        data = self.graphql(RELEASES_QUERY, {"appName": self.app, "limit": int(limit)},
                            "releases_graphql")
        app = data.get("app")
        if app is None:
            raise SourceNotFound(f"{SYSTEM}: releases_graphql: app {self.app!r} not found",
                                 system=SYSTEM, target=str(self.client.base_url) + "/graphql",
                                 hint="check the app name (fly apps list)")
        nodes = ((app.get("releases") or {}).get("nodes")) if isinstance(app, dict) else None
        if not isinstance(nodes, list):
            raise self._protocol("releases_graphql", data, "expected app.releases.nodes")
        return [normalise_release(n, "graphql") for n in nodes if isinstance(n, dict)]

    def releases(self, limit: int = 25) -> Releases:
        """Releases newest first: REST, or GraphQL when REST is missing, failing or malformed.

        Auth errors are not retried on GraphQL: the same token would be refused there too.
        """
        try:
            found = self.releases_rest(limit)
            return Releases(_newest_first(found), "rest")
        except (SourceNotFound, SourceProtocolError, SourceUnavailable) as exc:
            if isinstance(exc, SourceUnavailable) and exc.status is None:
                raise  # the host is unreachable: GraphQL lives on the same host
            reason = f"REST releases unusable ({exc.kind}: {exc.message})"
        found = self.releases_graphql(limit)
        return Releases(_newest_first(found), "graphql", reason)

    # ------------------------------------------------------------------ logs
    def logs(self, *, since: datetime | None = None, until: datetime | None = None,
             instance: str = "", region: str = "",
             max_pages: int = DEFAULT_MAX_PAGES) -> "LogStream":
        """A lazy stream of log entries in ``[since, until]`` (until: the run's now)."""
        return LogStream(self, since=since, until=until or self.session.now(),
                         instance=instance, region=region, max_pages=max_pages)


def _newest_first(releases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(releases, key=lambda r: (r["version"] is not None, r["version"] or 0),
                  reverse=True)


def _ns(dt: datetime) -> str:
    return str(int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000)


def log_entry(item: Any) -> dict[str, Any] | None:
    """A logs-API item (``{"id", "attributes": {…}}``) as a flat entry; None if not one."""
    if not isinstance(item, dict):
        return None
    attrs = item.get("attributes") if isinstance(item.get("attributes"), dict) else item
    if "message" not in attrs:
        return None
    meta = attrs.get("meta") if isinstance(attrs.get("meta"), dict) else {}
    # Key casing inside meta is unverified (reference §2): accept both.
    event = meta.get("event") or meta.get("Event") or {}
    provider = (event.get("provider") or event.get("Provider") or "") if isinstance(event, dict) else ""
    return {"id": str(item.get("id") or ""), "timestamp": attrs.get("timestamp"),
            "level": str(attrs.get("level") or ""), "instance": str(attrs.get("instance") or ""),
            "region": str(attrs.get("region") or ""), "provider": str(provider),
            "message": str(attrs.get("message")), "meta": meta}


class LogStream:
    """Log entries fetched page by page as the caller iterates.

    After iteration: ``pages`` fetched, ``entries`` yielded, ``truncated`` (the page cap was
    hit before the window was covered) and ``stop_reason``. A failed page raises its
    :class:`SourceError` from the iteration; entries already yielded stay with the caller.
    """

    def __init__(self, platform: FlyPlatform, *, since: datetime | None, until: datetime,
                 instance: str, region: str, max_pages: int) -> None:
        self.platform = platform
        self.since, self.until = since, until
        self.instance, self.region = instance, region
        self.max_pages = max(1, int(max_pages))
        self.pages = 0
        self.entries = 0
        self.truncated = False
        self.stop_reason = ""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.platform
        token = _ns(self.since) if self.since else ""
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {}
            if token:
                params["next_token"] = token
            if self.instance:
                params["instance"] = self.instance
            if self.region:
                params["region"] = self.region
            body = call_json(p.session, p.client, "GET",
                             f"/api/v1/apps/{quote(p.app, safe='')}/logs", params=params,
                             system=SYSTEM, op="logs_page")
            self.pages += 1
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise p._protocol("logs_page", body, 'expected {"data": [...], "meta": {…}}')
            past_window = False
            for item in body["data"]:
                entry = log_entry(item)
                if entry is None:
                    continue
                ts = parse_time(entry["timestamp"])
                if ts is not None and self.since is not None and ts < self.since:
                    continue
                if ts is not None and ts > self.until:
                    past_window = True
                    continue
                self.entries += 1
                yield entry
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            raw_next = meta.get("next_token")
            # fly-go decodes a string; a bare integer has been reported too.
            next_token = str(raw_next) if raw_next not in (None, "") else ""
            if past_window:
                self.stop_reason = "window covered"
                return
            if not body["data"]:
                self.stop_reason = "caught up (empty page)"
                return
            if not next_token:
                self.stop_reason = "no next_token"
                return
            if next_token == token or next_token in seen:
                self.stop_reason = "next_token did not advance"
                return
            # next_token is a Unix time in ns: once it passes the window's end, it is covered.
            if next_token.isdigit() and int(next_token) >= int(_ns(self.until)):
                self.stop_reason = "window covered"
                return
            if self.pages >= self.max_pages:
                self.truncated = True
                self.stop_reason = f"page cap ({self.max_pages}) reached"
                return
            seen.add(token)
            token = next_token


def logs_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Log entries as a table (columns: LOG_COLUMNS), timestamps as UTC datetimes."""
    rows = [{"timestamp": parse_time(e.get("timestamp")), "level": e.get("level", ""),
             "instance": e.get("instance", ""), "region": e.get("region", ""),
             "provider": e.get("provider", ""), "message": e.get("message", "")}
            for e in entries]
    return pd.DataFrame(rows, columns=LOG_COLUMNS)
