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

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import quote

import pandas as pd

from ..errors import (SourceAuthError, SourceError, SourceNotFound,
                      SourceProtocolError, SourceUnavailable)
from ..reads import Source, require
from ..redact import excerpt
from ..session import Session
from ..times import parse_time
from .fly import TOKEN_ENV, TOKEN_HINT, FlyClient
from .fly_models import Release

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Target
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


@dataclass(frozen=True)
class Releases:
    """Releases newest first, and where they came from (``rest`` or ``graphql``)."""

    releases: tuple[Release, ...] = ()
    source: str = "rest"
    fallback_reason: str = ""  # why REST was not used, when it was not


def releases_frame(releases: "list[Release] | tuple[Release, ...]") -> pd.DataFrame:
    """Releases as a table (columns: RELEASE_KEYS), newest first."""
    df = pd.DataFrame([r.to_dict() for r in releases], columns=RELEASE_KEYS)
    if df.empty:
        return df
    return df.sort_values("version", ascending=False, kind="stable",
                          na_position="last").reset_index(drop=True)


@dataclass(frozen=True)
class LogWindow:
    """The app's log lines of ``[since, until]`` as fetched: entries, paging facts, and the
    error of a page that failed after earlier pages arrived (their lines are kept)."""

    since: datetime | None = None
    until: datetime | None = None
    entries: tuple[dict[str, Any], ...] = ()
    pages: int = 0
    truncated: bool = False
    stop_reason: str = ""
    error: SourceError | None = None
    # spans of the window that were not read (the page cap): (from, to), UTC
    unread: tuple[tuple[datetime, datetime], ...] = ()


class FlyPlatform(FlyClient):
    """api.fly.io for one app: releases and logs."""

    SOURCE, SYSTEM = "Fly platform API", SYSTEM

    def _protocol(self, op: str, body: Any, expected: str) -> SourceProtocolError:
        return SourceProtocolError(
            f"{SYSTEM}: {op} answered {excerpt(body, 160)!r}; {expected}", system=SYSTEM,
            target=str(self.client.base_url),
            hint="the endpoint is not Fly's platform API; check FLY_API_BASE_URL")

    # ------------------------------------------------------------------ releases
    def releases_rest(self, limit: int = 25) -> list[Release]:
        """``GET /api/v1/apps/{app}/releases?limit=N`` (undocumented; what flyctl uses)."""
        body = call_json(self.session, self.client, "GET",
                         f"/api/v1/apps/{quote(self.app, safe='')}/releases",
                         params={"limit": int(limit)}, system=SYSTEM, op="releases_rest")
        if not isinstance(body, dict) or not isinstance(body.get("releases"), list):
            raise self._protocol("releases_rest", body, 'expected {"releases": [...]}')
        return [Release.from_api(r, "rest") for r in body["releases"] if isinstance(r, dict)]

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

    def releases_graphql(self, limit: int = 25) -> list[Release]:
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
        return [Release.from_api(n, "graphql") for n in nodes if isinstance(n, dict)]

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

    def read_logs(self, *, since: datetime | None, until: datetime,
                  max_pages: int = DEFAULT_MAX_PAGES) -> LogWindow:
        """Every line of the window (up to ``max_pages`` pages). A page that fails after
        others arrived is kept as the window's ``error``; a first page that fails raises."""
        stream = self.logs(since=since, until=until, max_pages=max_pages)
        entries: list[dict[str, Any]] = []
        error = None
        try:
            entries.extend(stream)
        except SourceError as exc:
            if stream.pages <= 1 and not entries:
                raise
            error = exc
        return LogWindow(since, until, tuple(entries), stream.pages, stream.truncated,
                         stream.stop_reason, error, tuple(stream.unread))


def connect(session: Session, target: "Target") -> FlyPlatform:
    """api.fly.io for the target app, or :class:`NotConfigured`."""
    token, = require(session, target, "Fly platform API", TOKEN_ENV, hint=TOKEN_HINT)
    return FlyPlatform(session, target.app, token=token, base_url=target.env("FLY_API_BASE_URL"))


PLATFORM = Source("Fly platform API", connect)
LOGS = Source("Fly logs API", connect)


def _newest_first(releases: list[Release]) -> tuple[Release, ...]:
    return tuple(sorted(releases, key=lambda r: (r.version is not None, r.version or 0),
                        reverse=True))


def _from_ns(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1e9, timezone.utc)


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
    hit before the window was covered), ``unread`` (the spans not read) and ``stop_reason``.
    A failed page raises its :class:`SourceError` from the iteration; entries already
    yielded stay with the caller.

    The logs API pages forward in time (about 100 lines a page) from ``next_token``, a time
    in ns. A busy app's window can need more pages than ``max_pages``; the newest lines are
    the ones an incident needs, so when half the pages leave the window uncovered, the rest
    jump ahead — to where, at the density seen so far, they reach the window's end — and the
    span between is reported as not read.
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
        self.unread: list[tuple[datetime, datetime]] = []
        self._largest = 0  # the largest page seen: a shorter one means caught up
        self._last_span = 0  # ns from the first to the last line of the newest page

    def __iter__(self) -> Iterator[dict[str, Any]]:
        start = _ns(self.since) if self.since else ""
        head = self.max_pages if not start or self.max_pages < 4 else self.max_pages // 2
        token = yield from self._pages(start, head)
        if token is None or not token.isdigit():
            return
        # the head did not cover the window: spend the other pages on its newest part
        left = self.max_pages - self.pages
        if left <= 0:
            self.unread.append((_from_ns(int(token)), self.until))
            spans = f"{self.unread[0][0]:%H:%M:%S}–{self.until:%H:%M:%S}"
            self.stop_reason = f"page cap ({self.max_pages}) reached: not read {spans} UTC"
            return
        # the time one page spans, from the newest page read (the density near the end)
        per_page = max(1, self._last_span or (int(token) - int(start)) // max(1, self.pages))
        jump = max(int(token), int(_ns(self.until)) - int(per_page * left * 0.8))
        if jump > int(token):
            self.unread.append((_from_ns(int(token)), _from_ns(jump)))
        self.truncated = False
        tail = yield from self._pages(str(jump), left)
        if tail is not None and tail.isdigit():
            self.unread.append((_from_ns(int(tail)), self.until))
        if self.unread:
            self.truncated = True
            spans = ", ".join(f"{a:%H:%M:%S}–{b:%H:%M:%S}" for a, b in self.unread)
            self.stop_reason = (f"page cap ({self.max_pages}) reached: not read {spans} UTC "
                                "(the newest lines were read)" if tail is None else
                                f"page cap ({self.max_pages}) reached: not read {spans} UTC")

    def _pages(self, token: str, budget: int) -> Iterator[dict[str, Any]]:
        """Pages from ``token`` until the window is covered (returns None) or ``budget``
        pages were read without covering it (returns the token to go on from)."""
        p = self.platform
        seen: set[str] = set()
        end = self.pages + budget
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
            stamps = []
            for item in body["data"]:
                entry = log_entry(item)
                if entry is None:
                    continue
                ts = parse_time(entry["timestamp"])
                if ts is not None:
                    stamps.append(ts)
                if ts is not None and self.since is not None and ts < self.since:
                    continue
                if ts is not None and ts > self.until:
                    past_window = True
                    continue
                self.entries += 1
                yield entry
            if len(stamps) > 1:
                self._last_span = int((max(stamps) - min(stamps)).total_seconds() * 1e9)
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
            self._largest = max(self._largest, len(body["data"]))
            if self.pages >= end and len(body["data"]) < self._largest:
                self.stop_reason = "caught up (a short page at the cap)"
                return None
            if self.pages >= end:
                self.truncated = True
                self.stop_reason = f"page cap ({self.max_pages}) reached"
                return next_token
            seen.add(token)
            token = next_token


def logs_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Log entries as a table (columns: LOG_COLUMNS), timestamps as UTC datetimes."""
    rows = [{"timestamp": parse_time(e.get("timestamp")), "level": e.get("level", ""),
             "instance": e.get("instance", ""), "region": e.get("region", ""),
             "provider": e.get("provider", ""), "message": e.get("message", "")}
            for e in entries]
    return pd.DataFrame(rows, columns=LOG_COLUMNS)
