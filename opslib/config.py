"""Targets and configuration from the environment.

Secrets are never parameters: tokens, passwords and keys come from environment variables
only. Every base URL a source talks to can be overridden by an environment variable, which is
also how the tests point live code at local servers.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import UsageError

# name -> (default, what it is). Documented in README.md ("Configuration for a live app").
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "FLY_API_TOKEN": ("", "Fly.io token (fly auth token, or fly tokens create …); secret"),
    "FLY_FLAPS_BASE_URL": ("https://api.machines.dev", "Fly Machines API base URL"),
    "FLY_API_BASE_URL": ("https://api.fly.io", "Fly platform API (releases, logs, GraphQL)"),
    "FLY_ORG": ("personal", "Fly organisation slug, for the managed Prometheus endpoint"),
    "FLY_PROMETHEUS_URL": ("", "Prometheus URL (default https://api.fly.io/prometheus/<FLY_ORG>)"),
    "FLY_INCIDENTS_URL": ("https://incidents.flyio.net/v1/incidents", "Fly status incidents feed"),
    "DATABASE_URL": ("", "Postgres DSN (Supabase direct or pooler); secret"),
    "SUPABASE_URL": ("", "Supabase project URL, https://<ref>.supabase.co"),
    "SUPABASE_ANON_KEY": ("", "Supabase anon/publishable key, sent as apikey; secret"),
    "SUPABASE_ACCESS_TOKEN": ("", "Supabase Management API token sbp_…; secret"),
    "SUPABASE_PROJECT_REF": ("", "Supabase project ref (default: taken from SUPABASE_URL)"),
    "SUPABASE_API_BASE_URL": ("https://api.supabase.com", "Supabase Management API base URL"),
    "SUPABASE_STATUS_URL": ("https://status.supabase.com", "Supabase Statuspage base URL"),
    "OPS_ON_CALL": ("", "On-call contact shown in every runbook's header"),
    "OPS_OPERATOR": ("", "Who ran the runbook, for the manifest (default user@host)"),
    "OPSLIB_REPORTS": ("", "Evidence folder (default reports/ in the checkout)"),
}

TARGET_KINDS = ("demo", "live", "replay")
DEMO_APP = "demo-app"
_APP_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def env(name: str, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return (environ.get(name) or ENVIRONMENT.get(name, ("", ""))[0]).strip()


def parse_target(spec: str, *, app: str, app_url: str) -> tuple[str, Path | None]:
    """``demo`` | ``live`` | ``replay:PATH`` (empty: demo unless an app or URL is given)."""
    spec = (spec or "").strip()
    if not spec:
        return ("live" if app or app_url else "demo"), None
    if spec in ("demo", "live"):
        return spec, None
    if spec.startswith("replay:") and len(spec) > len("replay:"):
        path = Path(spec[len("replay:"):]).expanduser()
        raw = path / "raw" if (path / "raw").is_dir() else path
        if not (raw / "session.json").is_file():
            raise UsageError(f"replay target {path} holds no capture (no raw/session.json)",
                             hint="give a run folder from reports/, e.g. "
                                  "target=replay:reports/<incident>/<run>")
        return "replay", raw
    raise UsageError(f"unknown target {spec!r}; use demo, live or replay:PATH")


def check_app(app: str) -> None:
    if app and not _APP_RE.fullmatch(app):  # fullmatch: "$" would let a trailing newline in
        raise UsageError(f"app name {app!r} is not a valid Fly app name "
                         "(lower-case letters, digits and '-')")


@dataclass
class Target:
    """What a run looks at: the app, its URL, and where answers come from."""

    kind: str
    app: str
    app_url: str
    scenario: str = ""
    capture: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def is_demo(self) -> bool:
        return self.kind == "demo"

    def env(self, name: str) -> str:
        return env(name, self.environ)

    def has(self, name: str) -> bool:
        """Whether a source's configuration is present (replay/demo answer from captures)."""
        return self.kind != "live" or bool(self.env(name))

    @property
    def health_url(self) -> str:
        return self.app_url.rstrip("/") + "/health"


def resolve_app_url(app: str, app_url: str) -> str:
    if app_url:
        if not re.match(r"^https?://[^\s/]+", app_url) or any(
                ord(c) < 32 or ord(c) == 127 for c in app_url):
            raise UsageError(f"app_url {app_url!r} must be an http(s) URL, "
                             "e.g. https://my-app.fly.dev")
        return app_url.rstrip("/")
    return f"https://{app or DEMO_APP}.fly.dev"
