"""A failed Fly API call as a finding that says what to check (app name, token, platform)."""
from __future__ import annotations

from ..errors import SourceError
from ..findings import Finding
from ..sources.fly import TOKEN_HINT


def error_finding(fid: str, error: SourceError, app: str, what: str) -> Finding:
    """A failed Fly call as a finding naming what to check (app name, token, platform)."""
    if error.kind == "not_found":
        return Finding(fid, "critical", f"{what}: app {app!r} not found on Fly.io",
                       f"{error.message}. Check the app name (`fly apps list`) and that the "
                       "token belongs to the app's organisation.", source=error.system)
    if error.kind == "auth":
        perm = ("the token is valid but lacks permission for this app or call"
                if error.status == 403 else "the token was not accepted")
        return Finding(fid, "unknown", f"{what}: {perm} (HTTP {error.status})",
                       f"{error.message}. Check FLY_API_TOKEN: {TOKEN_HINT.replace('<app>', app)}.",
                       source=error.system)
    if error.kind == "rate_limited":
        return Finding(fid, "unknown", f"{what}: rate limited by the Fly API",
                       f"{error.message}. Wait a minute and run again.", source=error.system)
    if error.kind in ("unavailable", "timeout", "server_error", "reset", "network", "refused",
                      "dns", "tls"):
        return Finding(fid, "unknown", f"{what}: the Fly API could not be reached ({error.kind})",
                       f"{error.message}. {error.hint} If it persists, check "
                       "https://status.flyio.net (Fly platform issue → Level 2).",
                       source=error.system)
    return Finding(fid, "unknown", f"{what}: the Fly API call failed ({error.kind})",
                   f"{error.message}. {error.hint}".strip(), source=error.system)
