"""Authentication Failures (seed Issue 5): Supabase Auth health, secrets, clock skew, key facts.

``collect`` does all I/O concurrently (the Auth health endpoint, the app, the Fly secrets list,
the Management API's network bans); ``assess_*`` are pure; ``plan_actions`` proposes
``fly secrets set`` with values from the environment only.

The app's recent logs show what users and the app were refused over time: JWTs "issued at
future" / "not yet valid" (clock skew, and on which machine), expired or invalid tokens,
"No API key found in request" / "Invalid API key" (a missing or wrong key), read against the
measured clocks and the app's secrets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
from matplotlib.figure import Figure

from ..actions import Action
from ..assess import recent_logs
from ..charting import time_axis
from ..config import Target
from ..errors import SourceError
from ..findings import Finding
from ..logscan import LogReport
from ..reads import Read, Readings, gather, measured
from ..session import Session
from ..sources.fly_secrets import SECRETS, env_digests, set_action
from ..sources.supabase import (AUTH, MANAGEMENT, GatewayCheck, assess_gateway_status,
                                gateway_get, key_facts)

REQUIRED = ("SUPABASE_URL", "SUPABASE_ANON_KEY")
# PostgREST allows 30 s of skew on exp/nbf/iat (reference §5.6); beyond it tokens fail as
# "JWT issued at future" / "JWT expired". 5 s is well above Date's 1 s resolution.
SKEW_WARN_S = 5.0
SKEW_CRIT_S = 30.0
L3 = "suspected breach or unauthorised access: contact the Security Team immediately (Level 3)"


@dataclass(frozen=True)
class AuthData:
    readings: Readings
    digests: dict[str, str | None] = field(default_factory=dict)

    auth = measured()  # GatewayCheck | None
    app = measured()  # GatewayCheck | None
    key = measured()  # dict[str, Any] | None
    secrets = measured()  # pd.DataFrame | None
    bans = measured()  # dict | None

    @property
    def banned_ips(self) -> list | None:
        return None if self.bans is None else self.bans.get("banned_ipv4_addresses")

    @property
    def clocks(self) -> pd.DataFrame:
        """Each server's ``Date`` against our clock: server, status, server_date, skew_s."""
        rows = [{"server": name, "url": c.url, "status": c.status, "error": c.error,
                 "server_date": c.server_date, "skew_s": c.skew_s}
                for name, c in (("Supabase gateway", self.auth), ("app", self.app)) if c]
        return pd.DataFrame(rows, columns=["server", "url", "status", "error", "server_date",
                                           "skew_s"])

    @property
    def key_table(self) -> pd.DataFrame | None:
        """Decoded facts of SUPABASE_ANON_KEY (never the key)."""
        if self.key is None:
            return None
        return pd.DataFrame([{k: v for k, v in self.key.items()}])


def _key_facts(session: Session, target: Target) -> dict[str, Any]:
    """What SUPABASE_ANON_KEY is (decoded here, recorded as facts: never the key)."""
    key = target.env("SUPABASE_ANON_KEY")
    present = session.configured("SUPABASE_ANON_KEY", bool(key))
    return session.capture("keyfacts", "environment", "SUPABASE_ANON_KEY",
                           lambda: key_facts(key, session.now()),
                           op="decode SUPABASE_ANON_KEY (not verified)", payload=present)


def _app_health(session: Session, target: Target, timeout: float) -> GatewayCheck:
    client = session.client("app", base_url=target.app_url,
                            timeout=httpx.Timeout(timeout, connect=timeout))
    return gateway_get(session, client, "/health", name="app_health")


def collect(session: Session, target: Target, *, names: tuple[str, ...] = REQUIRED,
            timeout: float = 5.0, log_window_minutes: float = recent_logs.DEFAULT_WINDOW_MIN,
            log_max_pages: int = recent_logs.DEFAULT_MAX_PAGES) -> AuthData:
    """Auth health, the app's clock, the Fly secrets, network bans and the app's recent logs,
    concurrently (``log_window_minutes`` of 0 reads no logs); plus the digests of the named
    environment values a ``fly secrets set`` would send."""
    reads = [
        Read("key", "SUPABASE_ANON_KEY, decoded without verifying",
             lambda: _key_facts(session, target)),
        Read("auth", "Supabase Auth health (/auth/v1/health) and its clock",
             lambda api: api.health(), AUTH),
        Read("app", f"the app's clock (GET {target.health_url})",
             lambda: _app_health(session, target, timeout)),
        Read("secrets", "the app's secrets (`fly secrets list`: names and digests)",
             lambda api: api.list(), SECRETS),
        Read("bans", "network bans (IPs blocked after failed logins, Management API)",
             lambda api: api.network_bans(), MANAGEMENT, context=True),
    ]
    reads += recent_logs.recent(session, log_window_minutes, log_max_pages)
    readings = gather(session, target, reads)
    return AuthData(readings, env_digests(session, target.app, sorted(set(names)), target.env))


# --------------------------------------------------------------------------- analysis
def assess_auth(check: GatewayCheck | None) -> list[Finding]:
    """Supabase Auth health: a refused key is configuration (L1); no answer is Level 2."""
    if check is None:
        return []
    sev, text = assess_gateway_status(check)
    platform = check.error is not None or (check.status or 0) >= 500
    return [Finding("supabase-auth", sev, f"Supabase Auth health: {text}",
                    f"GET {check.url} → " + (f"HTTP {check.status}" if check.status else check.error or ""),
                    [f"body: {check.message}"] if check.message else [], source="supabase-auth",
                    escalate=2 if sev == "critical" and platform else 0,
                    escalate_reason="Supabase Auth is not answering: Supabase outage (Level 2)"
                    if platform else "")]


def assess_secrets(secrets: pd.DataFrame | None, error: SourceError | None, app: str,
                   required: tuple[str, ...] = REQUIRED) -> list[Finding]:
    """The seed's "Verify SUPABASE_URL and SUPABASE_ANON_KEY secrets" (`fly secrets list`)."""
    if error is not None:
        return [Finding("fly-secrets-error", "unknown", f"could not list the app's secrets: "
                        f"{error.message}", error.hint, source="fly-machines")]
    if secrets is None:
        return []
    names = set(secrets["name"])
    missing = [n for n in required if n not in names]
    if missing:
        return [Finding("fly-secrets-missing", "critical",
                        f"{app} lacks the secret(s) {', '.join(missing)}",
                        "without them the app cannot reach Supabase Auth (the gateway answers "
                        "'No API key found in request'); set them with `fly secrets set`",
                        [f"present: {', '.join(sorted(names)) or '(none)'}"], source="fly-machines")]
    rows = secrets[secrets["name"].isin(required)]
    return [Finding("fly-secrets", "ok", f"{app} has {', '.join(required)} set",
                    "names and digests only; values are never read",
                    [f"{r.name}: digest {r.digest}, updated {r.updated_at}" for r in rows.itertuples()],
                    source="fly-machines")]


def assess_key(facts: dict[str, Any] | None) -> list[Finding]:
    """What SUPABASE_ANON_KEY is, decoded without verifying: a service_role/secret key used as
    the anon key is exposed to every client → Level 3."""
    if facts is None:
        return []
    if not facts.get("present"):
        return [Finding("anon-key", "warning", "SUPABASE_ANON_KEY is not set here",
                        "export it to check the key and to plan `fly secrets set`")]
    kind, role = facts.get("kind"), facts.get("role")
    if role == "service_role" or kind == "secret":
        return [Finding("anon-key-privileged", "critical",
                        f"SUPABASE_ANON_KEY is a {role} key ({kind})",
                        "the anon key is shipped to browsers and apps; a service_role/secret key "
                        "bypasses Row Level Security — anyone holding it can read and write all "
                        "data. Rotate it in the Supabase dashboard now.",
                        [f"kind {kind}, role {role}, exp {facts.get('exp')}"], source="environment",
                        escalate=3, escalate_reason=L3)]
    if facts.get("expired"):
        return [Finding("anon-key-expired", "critical", f"SUPABASE_ANON_KEY expired at {facts.get('exp')}",
                        "every request with it is refused; issue a new key", source="environment")]
    if kind == "not-a-jwt":
        return [Finding("anon-key-malformed", "warning",
                        "SUPABASE_ANON_KEY is neither a JWT nor an sb_publishable_ key",
                        "check for truncation or quotes around the value", source="environment")]
    detail = (f"legacy JWT ({facts.get('alg')}), role {role}, iss {facts.get('iss')}, "
              f"expires {facts.get('exp')} ({facts.get('days_left')} days)" if kind == "legacy-jwt"
              else "sb_publishable_ key (not a JWT; nothing to decode)")
    return [Finding("anon-key", "ok", f"SUPABASE_ANON_KEY carries role {role}", detail,
                    source="environment")]


def _skew_sev(skew: float) -> str:
    return "critical" if abs(skew) > SKEW_CRIT_S else "warning" if abs(skew) > SKEW_WARN_S else "ok"


def assess_clock_skew(auth: GatewayCheck | None, app: GatewayCheck | None) -> list[Finding]:
    """Clock skew between the app and Supabase (what breaks JWT validation), and ours.

    Both are measured against our clock; the difference app − Supabase does not depend on it.
    If both servers differ from us by the same amount, it is OUR clock that is off.
    """
    s = auth.skew_s if auth else None
    a = app.skew_s if app else None
    if s is None and a is None:
        return [Finding("clock-skew", "unknown", "no server Date header to compare clocks with")]
    out: list[Finding] = []
    if a is not None and s is not None:
        rel = round(a - s, 1)
        sev = _skew_sev(rel)
        direction = "ahead of" if rel > 0 else "behind"
        detail = ("tokens the app signs carry iat/nbf in Supabase's future ('JWT issued at "
                  "future', 30 s leeway), and it sees Supabase's tokens expire early"
                  if rel > 0 else
                  "the app sees Supabase-issued tokens as issued in the future / not yet valid, "
                  "and accepts them past expiry")
        out.append(Finding("clock-skew", sev,
                           f"app clock {abs(rel):.0f} s {direction} Supabase's" if sev != "ok"
                           else f"app and Supabase clocks agree ({rel:+.1f} s)",
                           (detail + ". Fly machines take their time from the host: check "
                            "`fly machine status <id> -a <app>`; restarting moves nothing "
                            "reliably, so escalate") if sev == "critical"
                           else detail if sev != "ok" else "within JWT leeway",
                           [f"app Date {app.server_date} ({a:+.1f} s vs ours)",
                            f"Supabase Date {auth.server_date} ({s:+.1f} s vs ours)"],
                           escalate=2 if sev == "critical" else 0,
                           escalate_reason="Fly machines take their time from the host: a skewed "
                                           "clock is a Fly.io platform issue (Level 2)"
                           if sev == "critical" else ""))
        if _skew_sev(s) != "ok" and _skew_sev(rel) == "ok":
            out.append(Finding("clock-skew-local", "info",
                               f"our own clock is {-s:+.0f} s off (both servers agree)",
                               "fix NTP on this machine before trusting local timestamps"))
        return out
    skew, who = (a, "app") if a is not None else (s, "Supabase")
    sev = _skew_sev(skew)
    return [Finding("clock-skew", sev, f"{who} clock {skew:+.0f} s from ours",
                    "only one server answered with a Date header: this compares it with our "
                    "clock, so check ours too" if sev != "ok" else "within JWT leeway")]


def assess_bans(bans: dict | None, error: SourceError | None) -> list[Finding]:
    if error is not None:
        return [Finding("network-bans-error", "unknown", f"could not read network bans: {error.message}",
                        error.hint, source="supabase-api")]
    if bans is None:
        return []
    ips = [ip for ip in bans.get("banned_ipv4_addresses") or [] if ip]
    if not ips:
        return [Finding("network-bans", "ok", "no IP is banned for failed database logins",
                        source="supabase-api")]
    return [Finding("network-bans", "warning",
                    f"{len(ips)} IP(s) banned after repeated failed logins",
                    "repeated failed logins: someone may be guessing credentials (or an app "
                    "instance has a wrong password). Check whether these are your own egress IPs.",
                    ips[:20], source="supabase-api", escalate=3, escalate_reason=L3)]


# --------------------------------------------------------------------------- logs
AUTH_SIGNALS = ("jwt_clock_skew", "jwt_expired", "jwt_invalid", "invalid_api_key",
                "refresh_token_failures")
DEVICE_CLOCK = "check the device clock"  # supabase-js warns about the user's own device


def _span(s: dict) -> str:
    first, last = (s.get("first_seen") or "?")[11:16], (s.get("last_seen") or "?")[11:16]
    return f"at {first} UTC" if first == last else f"between {first} and {last} UTC"


def assess_logs(report: LogReport | None, data: AuthData, app: str) -> list[Finding]:
    """What users and the app were refused, read against the measured clocks and secrets:

    * tokens "issued at future" / "not yet valid" with the app's clock measured ahead: the
      skew is confirmed, on the machines the logs name; with the clocks agreeing now: only
      some machines are off (the probe reached another), or the skew was on users' devices;
    * "No API key found" / "Invalid API key" with the secret missing: the missing secret is
      what users hit; with it present: its value is wrong or was rotated.
    """
    if report is None:
        return []
    out: list[Finding] = []
    skew = report.signal("jwt_clock_skew")
    if skew is not None and skew["severity"] != "ok":
        measured = [f for f in assess_clock_skew(data.auth, data.app)
                    if f.id == "clock-skew" and f.severity in ("warning", "critical")]
        where = ", ".join(skew.get("instances", [])) or "the app"
        device = all(DEVICE_CLOCK in e.lower() for e in skew.get("examples", []))
        if measured:
            out.append(Finding(
                "auth-logs-clock-skew", "critical",
                f"the logs confirm the skew: {skew['count']}x tokens refused as issued in the "
                f"future / not yet valid on {where} {_span(skew)}",
                f"{measured[0].title}: every token issued by the fast clock is refused until "
                "it catches up, so users are logged out or see 401s. The machines that log it "
                "are the ones whose clock is off.", recent_logs.signal_evidence(skew),
                source="logs", escalate=2,
                escalate_reason="Fly machines take their time from the host: a skewed clock is "
                                "a Fly.io platform issue (Level 2)"))
        elif device:
            out.append(Finding(
                "auth-logs-device-clock", "info",
                f"{skew['count']}x supabase-js warns that sessions look issued in the future "
                f"{_span(skew)}: users' device clocks",
                "the warning comes from the browser's client library comparing with the "
                "user's own clock; the servers' clocks agree. Nothing to fix server-side.",
                recent_logs.signal_evidence(skew), source="logs"))
        else:
            out.append(Finding(
                "auth-logs-clock-skew", "warning",
                f"{skew['count']}x tokens refused as issued in the future on {where} "
                f"{_span(skew)}, but the clocks measured now agree",
                "the probe reached a machine whose clock is fine: check the clock of the "
                f"machines named (`fly ssh console -s -C date -a {app}`), or the skew was brief.",
                recent_logs.signal_evidence(skew), source="logs"))
    key = report.signal("invalid_api_key")
    if key is not None and key["severity"] != "ok":
        missing = ([n for n in REQUIRED if n not in set(data.secrets["name"])]
                   if data.secrets is not None else [])
        if missing:
            title = (f"the app's calls to Supabase are refused for want of a key "
                     f"({key['count']}x {_span(key)}): {', '.join(missing)} is not set")
            detail = ("the gateway answers 'No API key found in request' because the app has "
                      "no key to send: set the missing secret (planned below).")
        else:
            title = f"Supabase refused the app's API key {key['count']}x {_span(key)}"
            detail = ("the secret is set but its value is refused ('Invalid API key'): it was "
                      "rotated or belongs to another project. Set the current key from the "
                      "dashboard (refresh_vars=['SUPABASE_ANON_KEY']).")
        out.append(Finding("auth-logs-api-key", "critical", title, detail,
                           recent_logs.signal_evidence(key), source="logs"))
    return out



def auth_over_time(report: LogReport | None) -> pd.DataFrame:
    """Per minute: the seed's auth grep (``auth|unauthorized|401``) and each JWT / API-key
    signal: when users started being refused, and whether it is still going on."""
    cols = ["auth"] + list(AUTH_SIGNALS)
    if report is None or report.per_minute.empty:
        return pd.DataFrame(columns=cols)
    pm = report.per_minute
    return pd.DataFrame({c: pm[c] if c in pm.columns else 0 for c in cols}, index=pm.index)


def auth_chart(report: LogReport | None) -> Figure:
    """Auth lines (the seed's grep) and JWT/API-key errors per minute over the log window."""
    fig = Figure(figsize=(9, 3.2))
    ax = fig.subplots()
    df = auth_over_time(report)
    if df.empty:
        ax.text(0.5, 0.5, "no logs read (see findings)", ha="center", va="center")
        return fig
    ax.bar(df.index, df["auth"], width=1 / 1440 * 0.9, color="#b39ddb",
           label='seed grep "auth|unauthorized|401"', align="edge")
    colours = {"jwt_clock_skew": "#c62828", "jwt_expired": "#ef6c00", "jwt_invalid": "#6a1b9a",
               "invalid_api_key": "#1565c0", "refresh_token_failures": "#00838f"}
    for sid, colour in colours.items():
        if df[sid].sum():
            ax.plot(df.index, df[sid], color=colour, linewidth=1.6, marker="o", markersize=2.5,
                    label=sid)
    ax.set_ylabel("lines per minute")
    ax.set_ylim(bottom=0)
    ax.set_title("Auth lines and JWT / API-key errors per minute")
    ax.legend(loc="upper left", fontsize=7)
    time_axis(ax)
    return fig


def clock_chart(clocks: pd.DataFrame) -> Figure:
    """Each server's clock offset from ours, against JWT leeway."""
    fig = Figure(figsize=(6, 2.6))
    ax = fig.subplots()
    known = clocks.dropna(subset=["skew_s"]) if not clocks.empty else clocks
    if known.empty:
        ax.text(0.5, 0.5, "no Date headers", ha="center", va="center")
        return fig
    colours = ["#c62828" if abs(v) > SKEW_CRIT_S else "#ef6c00" if abs(v) > SKEW_WARN_S
               else "#2e7d32" for v in known["skew_s"]]
    ax.barh(known["server"], known["skew_s"], color=colours)
    for x in (-SKEW_CRIT_S, SKEW_CRIT_S):
        ax.axvline(x, color="#c62828", linestyle="--", linewidth=1)
    ax.axvline(0, color="#000000", linewidth=0.8)
    ax.set_xlabel("clock offset from ours (s); dashed: 30 s JWT leeway")
    ax.set_title("server clocks (Date header)")
    return fig


# --------------------------------------------------------------------------- remediation
def plan_actions(data: AuthData, app: str, refresh: list[str] | tuple[str, ...] = ()) -> list[Action]:
    """``fly secrets set`` for required secrets the app lacks, and for names in ``refresh``,
    with values from this environment — only values this run has seen work: the Auth health
    check with our SUPABASE_URL/SUPABASE_ANON_KEY returned 200."""
    if data.secrets is None:
        return []
    present = dict(zip(data.secrets["name"], data.secrets["digest"]))
    wanted = sorted({n for n in REQUIRED if n not in present} | set(refresh))
    if not wanted:
        return []
    verified = data.auth is not None and data.auth.status == 200
    names = [n for n in wanted if data.digests.get(n)
             and (n not in REQUIRED or verified)]
    if not names:
        return []
    return [set_action(app, names, data.digests, present,
                       reason="seed: re-deploy with updated secrets; values come from this "
                              "environment at apply time and were verified against Supabase "
                              "Auth; then `fly secrets deploy` (or a restart) loads them")]


def unplanned(data: AuthData, refresh: list[str] | tuple[str, ...] = ()) -> list[Finding]:
    """Say why a needed ``fly secrets set`` was not planned (missing or unverified value)."""
    if data.secrets is None:
        return []
    present = set(data.secrets["name"])
    wanted = sorted({n for n in REQUIRED if n not in present} | set(refresh))
    out = []
    verified = data.auth is not None and data.auth.status == 200
    for n in wanted:
        if not data.digests.get(n):
            out.append(Finding(f"cannot-plan-{n.lower()}", "info",
                               f"not planning `fly secrets set {n}`: ${n} is not set here",
                               f"export {n} with the right value and run again"))
        elif n in REQUIRED and not verified:
            out.append(Finding(f"cannot-plan-{n.lower()}", "info",
                               f"not planning `fly secrets set {n}`: this environment's Supabase "
                               "settings did not pass the Auth health check",
                               "fix SUPABASE_URL / SUPABASE_ANON_KEY here first"))
    return out
