"""Application Not Responding (seed "Issue 1"): 502/503, failing checks, no response.

``collect`` does all I/O concurrently: ``/health`` probes, the machine list (states, checks,
recent events) and the edge's responses by status from Prometheus. The rest is pure.

The diagnosis separates the causes the seed's remediation treats differently (reference §4):

* **all machines stopped** — Fly's proxy has no machine to send to: users get **503**;
* **app not listening / crashing** — machines run but the service check says
  ``connection refused``: the app is down or listens on another port than ``internal_port``;
  the proxy answers **502**;
* a **recovered blip** — 5xx at the edge earlier in the window (e.g. during a deploy) but
  none now and every probe answers: not an incident, nothing to do.

The app's recent logs (``fly logs -a app``) add what the proxy and the app said: ``[PC01]
instance refused connection`` names the port the proxy connects to (``internal_port``), and
the app's own ``listening on …`` line names where it listens; the two disagreeing is a port
mismatch (or a bind to 127.0.0.1), told apart from a crash by exit lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..actions import Action, machine_action
from ..assess import platform, recent_logs
from ..assess.endpoint import assess_probes, probes_frame
from ..charting import time_axis
from ..config import Target
from ..escalation import escalation
from ..findings import Finding
from ..logscan import LogReport
from ..promql import MetricsData, queries
from ..reads import Read, gather, measured
from ..session import Session
from ..sources import fly
from ..sources import prometheus as prom
from ..sources.fly import checks_frame, machines_frame
from ..sources.fly_models import Machine
from ..sources.http import probe_many
from ..thresholds import classify
from ..times import iso, parse_duration, parse_time

RANGE_QUERIES = ("edge_5xx_by_status", "request_rate")
RESTART_GRACE = timedelta(minutes=2)  # a machine needs a moment after a restart to pass checks
QUIET_FOR = timedelta(minutes=5)  # no 5xx for this long at the end of the window = recovered
DEPLOY_NEAR = timedelta(minutes=5)


@dataclass(frozen=True)
class NotRespondingData(MetricsData):
    probes = measured(empty=list)  # list[ProbeResult]
    machines = measured()  # list[Machine] | None

    @property
    def metrics(self) -> dict[str, prom.QueryResult | Exception]:
        return prom.results(self.readings, RANGE_QUERIES)

    @property
    def log_entries(self) -> tuple[dict[str, Any], ...]:
        window = self.readings.value("logs")
        return window.entries if window is not None else ()


def collect(session: Session, target: Target, *, probes: int = 5, timeout: float = 5.0,
            window: str = "1h", step: str = "1m", rate: str = "5m",
            promql: dict[str, str] | None = None,
            log_window_minutes: float = recent_logs.DEFAULT_WINDOW_MIN,
            log_max_pages: int = recent_logs.DEFAULT_MAX_PAGES) -> NotRespondingData:
    """Probe /health, list machines, read the edge's 5xx and the recent logs, concurrently
    (``log_window_minutes`` of 0 reads no logs).

    Raises:
        UsageError: a bad window, step, rate or promql override (before any call is made).
    """
    qs = queries(target.app, rate=rate, window=window, overrides=promql)
    reads = [Read("probes", f"GET {target.health_url} ×{probes}",
                  lambda: probe_many(session, target.health_url, probes, timeout=timeout)),
             Read("machines", "the app's machines, checks and recent events",
                  lambda api: api.list_machines(), fly.MACHINES),
             *prom.range_reads({n: qs[n] for n in RANGE_QUERIES}, now=session.now(),
                               window=window, step=step, context=RANGE_QUERIES),
             platform.read(session, target)]
    reads += recent_logs.recent(session, log_window_minutes, log_max_pages)
    return NotRespondingData(window, step, qs, gather(session, target, reads))


# --------------------------------------------------------------------------- frames
def probes_table(data: NotRespondingData, now: datetime) -> pd.DataFrame:
    return probes_frame(data.probes, now)


def machines_table(data: NotRespondingData) -> pd.DataFrame:
    return machines_frame(data.machines or [])


def checks_table(data: NotRespondingData) -> pd.DataFrame:
    return checks_frame(data.machines or [])


EVENT_COLUMNS = ["machine", "time", "type", "status", "source", "exit_code", "oom_killed",
                 "requested_stop"]


def events_table(data: NotRespondingData) -> pd.DataFrame:
    """Recent events of every machine (from the machine list), newest first."""
    rows = [{"machine": m.id, "time": pd.Timestamp(ev.timestamp) if ev.timestamp else pd.NaT,
             "type": ev.type, "status": ev.status, "source": ev.source,
             "exit_code": ev.exit.exit_code if ev.exit else None,
             "oom_killed": ev.exit.oom_killed if ev.exit else None,
             "requested_stop": ev.exit.requested_stop if ev.exit else None}
            for m in data.machines or [] for ev in m.events]
    df = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    return df.sort_values("time", ascending=False).reset_index(drop=True) if len(df) else df


def edge_frame(data: NotRespondingData) -> pd.DataFrame:
    """Edge responses over the window: ``timestamp``, ``series`` (``all`` or a 5xx status),
    ``rps`` (requests per second)."""
    parts = []
    total = data.metrics.get("request_rate")
    if isinstance(total, prom.QueryResult) and not total.empty:
        parts.append(total.frame.assign(series="all")[["timestamp", "series", "value"]])
    errors = data.metrics.get("edge_5xx_by_status")
    if isinstance(errors, prom.QueryResult) and not errors.empty:
        f = errors.frame
        label = f["status"].astype(str) if "status" in f.columns else pd.Series("5xx", index=f.index)
        parts.append(f.assign(series=label)[["timestamp", "series", "value"]])
    if not parts:
        return pd.DataFrame(columns=["timestamp", "series", "rps"])
    return pd.concat(parts, ignore_index=True).rename(columns={"value": "rps"})


# --------------------------------------------------------------------------- diagnosis
def _port(check_name: str) -> str:
    m = re.search(r"-(\d+)$", check_name)
    return m.group(1) if m else ""


def last_restart(machines: list[Machine] | None) -> dict[str, datetime]:
    """When each machine was last restarted by someone (``fly machine restart``, ``fly apps
    restart``): a ``restart`` event, or a ``start`` requested by a user."""
    out: dict[str, datetime] = {}
    for m in machines or []:
        for ev in m.events:  # newest first
            if (ev.type == "restart" or (ev.type == "start" and ev.source == "user")) \
                    and ev.timestamp is not None:
                out[m.id] = ev.timestamp
                break
    return out


@dataclass
class Diagnosis:
    """What is wrong, in one word, and which machines it concerns."""

    kind: str  # no-machines | all-stopped | not-listening | crashing | checks-failing |
    #            partial | probes-failing | ok | unknown
    findings: list[Finding]
    stopped: list[str] = field(default_factory=list)
    unhealthy: list[str] = field(default_factory=list)
    persisted_after_restart: bool = False


def diagnose(data: NotRespondingData, app: str, now: datetime,
             limits: dict[str, tuple[float, float]]) -> Diagnosis:
    """Probes + machines + checks + exits → the cause, with the evidence behind it.

    The cause comes first in the findings (it is the escalation's reason), then what the
    probes and the edge saw."""
    diag = _diagnose(data, app, now)
    if data.probes:
        diag.findings += assess_probes(probes_table(data, now), limits, data.probes[0].url)
    diag.findings += assess_edge(data, app, now, limits)
    return diag


def _diagnose(data: NotRespondingData, app: str, now: datetime) -> Diagnosis:
    findings: list[Finding] = []
    statuses = [p.status for p in data.probes]
    n503 = sum(s == 503 for s in statuses)
    n502 = sum(s == 502 for s in statuses)
    probe_failing = any(s is None or s >= 500 for s in statuses)

    if data.readings["machines"].failed:
        e = data.readings["machines"].error
        sev = "critical" if e.kind == "not_found" else "unknown"
        findings.append(Finding("machines-error", sev, f"could not list machines: {e.message}",
                                e.hint + (f" — is {app!r} the app's name (`fly apps list`)?"
                                          if e.kind == "not_found" else ""),
                                source="fly-machines"))
        return Diagnosis("probes-failing" if probe_failing else "unknown", findings)
    if data.machines is None:
        return Diagnosis("probes-failing" if probe_failing else "unknown", findings)

    mdf, cdf = machines_frame(data.machines), checks_frame(data.machines)
    if mdf.empty:
        findings.append(Finding("nr-no-machines", "critical", f"{app} has no machines",
                                "nothing can serve traffic: users get 503. Deploy (`fly deploy`) "
                                f"or scale up (`fly scale count 2 -a {app}`)."))
        return Diagnosis("no-machines", findings)
    started = mdf[mdf["state"] == "started"]
    idle = mdf[mdf["auto_stopped"].astype(bool)]
    # auto-stopped machines are started by Fly's proxy on demand: never "down", never started
    down = mdf[mdf["state"].isin(["stopped", "failed", "suspended"]) & ~mdf["id"].isin(idle["id"])]
    critical_checks = cdf[cdf["status"] == "critical"] if not cdf.empty else cdf
    unhealthy = [mid for mid in started["id"] if mid in set(critical_checks["machine"])]
    healthy = [mid for mid in started["id"] if mid not in unhealthy]
    refused = critical_checks[critical_checks["output"].str.contains("refused", case=False,
                                                                     na=False)]
    probe_note = (f"; probes: {n503}× 503, {n502}× 502 of {len(statuses)}" if statuses else "")

    def exit_note(r: Any) -> str:
        if r.last_exit_code is None or r.last_exit_code != r.last_exit_code:
            return "no exit recorded"
        return (f"last exit code {int(r.last_exit_code)} at {r.last_exit_at}"
                + (" (OOM-killed)" if r.oom_killed else "")
                + f", restart_count {r.restart_count}")

    restarts = last_restart(data.machines)
    kind = "ok"
    if len(idle):
        findings.append(Finding(
            "nr-auto-stopped", "info",
            f"{len(idle)} machine(s) stopped by auto-stop: will start on the next request",
            "Fly's proxy stops idle machines and starts them on demand; that is not a fault "
            "and they are not started here.",
            [f"{r.id} ({r.region}): {r.state}" for r in idle.itertuples()], source="fly-machines"))
    if started.empty and len(idle) == len(mdf):
        kind = "probes-failing" if probe_failing else "ok"
        if probe_failing:
            findings.append(Finding(
                "nr-auto-start-failing", "critical",
                f"every machine of {app} is auto-stopped and requests fail: Fly's proxy did not "
                "start one for them",
                "auto-start itself is failing: look for the proxy's lines in `fly logs -a "
                f"{app}` (e.g. \"could not start machine\"), and Fly's status page{probe_note}",
                [f"{r.id} ({r.region}): {r.state}" for r in idle.itertuples()],
                source="fly-machines"))
    elif started.empty:
        kind = "all-stopped"
        requested = [m for m in data.machines
                     if any(ev.exit and ev.exit.requested_stop for ev in m.events[:3])]
        why = ("they were stopped on request (`fly machine stop`, `fly scale count 0` or "
               "auto-stop with auto-start off)" if len(requested) == len(mdf) else
               "they exited and were not restarted (see last exits)")
        findings.append(Finding(
            "nr-all-stopped", "critical",
            (f"all {len(mdf)} machines of {app} are stopped" if len(mdf) > 1 else
             f"the only machine of {app} is stopped") + ": no healthy machine, users get 503",
            f"Fly's proxy has no machine to route to; {why}{probe_note}.",
            [f"{r.id} ({r.region}): {r.state}; {exit_note(r)}" for r in mdf.itertuples()],
            source="fly-machines"))
    elif not healthy:
        crashed = mdf[mdf["id"].isin(unhealthy) & mdf["last_exit_code"].notna()
                      & (mdf["last_exit_code"].fillna(0) != 0)]
        recent_crash = [r.id for r in crashed.itertuples()
                        if r.last_exit_at and (now - parse_time(r.last_exit_at))
                        <= timedelta(minutes=30)]
        if len(refused) and not recent_crash:
            kind = "not-listening"
            ports = sorted({_port(n) for n in refused["name"]} - {""})
            port_text = f" on port {', '.join(ports)}" if ports else ""
            findings.append(Finding(
                "nr-not-listening", "critical",
                f"machines run but nothing answers{port_text}: checks say 'connection "
                f"refused' → 502",
                f"the app process is up but does not listen where Fly sends traffic{port_text} "
                "(internal_port in fly.toml): a port mismatch, or it binds 127.0.0.1 instead "
                f"of 0.0.0.0{probe_note}. Fix the port or roll back the release (rollback "
                "runbook); a restart does not change the port.",
                [f"{r.machine} {r.name}: {r.output}" for r in refused.itertuples()],
                source="fly-machines"))
        elif recent_crash:
            kind = "crashing"
            findings.append(Finding(
                "nr-crashing", "critical",
                f"the app is crashing on {len(recent_crash)} machine(s): 502 while it restarts",
                f"recent non-zero exits and critical checks{probe_note}; read the app's logs "
                "for the crash (`fly logs -a …`); an OOM kill → run the memory runbook.",
                [f"{r.id}: {exit_note(r)}" for r in crashed.itertuples()], source="fly-machines"))
        else:
            kind = "checks-failing"
            findings.append(Finding(
                "nr-checks-failing", "critical",
                f"every started machine fails its health checks ({len(critical_checks)} critical)",
                f"a critical service check takes the machine out of routing{probe_note}",
                [f"{r.machine} {r.name}: {r.output}" for r in critical_checks.itertuples()],
                source="fly-machines"))
    elif unhealthy or len(down):
        kind = "partial"
        findings.append(Finding(
            "nr-reduced-capacity", "warning",
            f"{len(healthy)}/{len(mdf)} machines healthy: capacity reduced",
            "some machines are stopped or failing checks; the rest still serve",
            [f"{r.id} ({r.region}): {r.state}, {r.checks_critical} critical check(s); "
             f"{exit_note(r)}" for r in mdf[~mdf["id"].isin(healthy)].itertuples()],
            source="fly-machines"))
    elif probe_failing:
        kind = "probes-failing"
    else:
        findings.append(Finding("nr-machines-ok", "ok",
                                f"{len(started)}/{len(mdf)} machines started, all checks passing",
                                source="fly-machines"))

    persisted = False
    if kind in ("not-listening", "crashing", "checks-failing", "all-stopped"):
        affected = unhealthy if kind != "all-stopped" else list(mdf["id"])
        tried = {mid: t for mid, t in restarts.items() if mid in affected
                 and RESTART_GRACE <= now - t <= timedelta(hours=6)}
        if tried:
            persisted = True
            latest = max(tried.values())
            since = (f"still failing {int((now - latest).total_seconds() // 60)} min after a "
                     f"restart of {len(tried)} machine(s)")
            reason = escalation([Finding("x", "critical", "")], persisted_after_restart=True)["reason"]
            findings.append(Finding(
                "nr-persists-after-restart", "critical", since,
                "the seed: if the issue persists after restart, escalate; if restart fails, "
                "scale down and up",
                [f"{mid}: restarted at {iso(t)}" for mid, t in sorted(tried.items())],
                escalate=2, escalate_reason=f"{reason}: {since}", source="fly-machines"))
    return Diagnosis(kind, findings, stopped=list(down["id"]), unhealthy=unhealthy,
                     persisted_after_restart=persisted)


def assess_edge(data: NotRespondingData, app: str, now: datetime,
                limits: dict[str, tuple[float, float]]) -> list[Finding]:
    """The edge's 5xx over the window: still failing now, a recovered burst, or none."""
    errors, total = data.metrics.get("edge_5xx_by_status"), data.metrics.get("request_rate")
    out: list[Finding] = []
    for name, got in (("edge_5xx_by_status", errors), ("request_rate", total)):
        if isinstance(got, Exception):
            out.append(prom.error_finding(name, got, what="the edge's responses"))
    if out or errors is None:
        return out
    if isinstance(total, prom.QueryResult) and total.empty and errors.empty:
        return [prom.no_data_finding(total, app=app, window=data.window,
                                     what="the edge's requests")]
    edge = edge_frame(data)
    five = edge[edge["series"] != "all"]
    if five.empty or five["rps"].max() <= 0:
        return [Finding("nr-edge-5xx", "ok", f"no 5xx at Fly's edge in the last {data.window}",
                        source="prometheus")]
    step_s = parse_duration(data.step)
    by_status = five.groupby("series")["rps"]
    evidence = [f"HTTP {s}: ~{int(round(v.sum() * step_s))} responses, peak {v.max():.2f}/s"
                for s, v in by_status]
    last_t = five["timestamp"].max()
    now_5xx = five[five["timestamp"] == last_t]["rps"].sum()
    all_ = edge[edge["series"] == "all"]
    now_all = all_[all_["timestamp"] == all_["timestamp"].max()]["rps"].sum() if len(all_) else 0.0
    rate = 100.0 * now_5xx / now_all if now_all > 0 else (100.0 if now_5xx > 0 else 0.0)
    bad = five[five["rps"] > 0]
    first, last = bad["timestamp"].min(), bad["timestamp"].max()
    quiet = pd.Timestamp(now) - last >= pd.Timedelta(QUIET_FOR)
    if now_5xx > 0 and not quiet:
        sev = classify(rate, limits["error_rate_pct"])
        return [Finding("nr-edge-5xx", "critical" if sev == "critical" else sev,
                        f"{rate:.0f}% of requests at Fly's edge fail now with 5xx "
                        f"({now_5xx:.1f}/s), since {first:%H:%M} UTC",
                        f"thresholds: warning > {limits['error_rate_pct'][0]:g}%, critical > "
                        f"{limits['error_rate_pct'][1]:g}%", evidence, source="prometheus")]
    deploys = _deploys_near(data.machines, first.to_pydatetime(), last.to_pydatetime())
    context = (f" while machines were being updated ({', '.join(deploys)}), i.e. during a deploy"
               if deploys else "")
    return [Finding("nr-edge-5xx", "ok",
                    f"5xx at the edge between {first:%H:%M} and {last:%H:%M} UTC{context}; none "
                    f"for the last {int((pd.Timestamp(now) - last).total_seconds() // 60)} min",
                    "a burst that has stopped and every probe answering is not an outage: "
                    "nothing to do. If it recurs at every deploy, check the deploy strategy and "
                    "health-check grace period.", evidence, source="prometheus")]


def _deploys_near(machines: list[Machine] | None, first: datetime, last: datetime) -> list[str]:
    return sorted({f"{m.id} {ev.type} at {ev.timestamp:%H:%M}" for m in machines or []
                   for ev in m.events if ev.type in ("update", "launch", "replace")
                   and ev.timestamp is not None
                   and first - DEPLOY_NEAR <= ev.timestamp <= last + DEPLOY_NEAR})


# --------------------------------------------------------------------------- logs
# "Server listening on http://0.0.0.0:3000", "Listening on 127.0.0.1:8080", uvicorn's
# "Uvicorn running on http://127.0.0.1:8000", Go's "listening at [::]:8080"
_LISTEN = re.compile(r"(?:listening|running) (?:on|at) (?:https?://)?"
                     r"(\[[0-9a-f:]*\]|[\w.-]+):(\d{2,5})\b", re.I)
_PC01_PORT = re.compile(r"\[PC0[12]\] instance refused connection\. is your app listening on "
                        r"[^\s:]+:(\d+)", re.I)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
LISTEN_COLUMNS = ["machine", "time", "host", "port", "line"]


def listening_table(entries: tuple[dict[str, Any], ...]) -> pd.DataFrame:
    """Each machine's latest "listening on host:port" line in the logs (the app's own
    startup line), the address it really serves."""
    rows: dict[str, dict] = {}
    for e in entries:
        if e.get("provider") not in ("app", ""):
            continue
        m = _LISTEN.search(e.get("message", ""))
        if m:
            rows[e.get("instance", "")] = {"machine": e.get("instance", ""),
                                           "time": e.get("timestamp"), "host": m.group(1),
                                           "port": int(m.group(2)),
                                           "line": e.get("message", "").strip()[:160]}
    return pd.DataFrame(list(rows.values()), columns=LISTEN_COLUMNS)


def proxy_ports(entries: tuple[dict[str, Any], ...]) -> list[int]:
    """The ports the proxy says it tried in its PC01/PC02 lines (the service's internal_port)."""
    ports = {int(m.group(1)) for e in entries
             if (m := _PC01_PORT.search(e.get("message", "")))}
    return sorted(ports)


def assess_logs(diag: Diagnosis, data: NotRespondingData,
                report: LogReport | None) -> list[Finding]:
    """The logs' word on the cause: PC01 (the proxy could not connect to the internal port)
    against the app's own "listening on" line — another port is a port mismatch, 127.0.0.1
    a bind to localhost; exits with a non-zero code are a crash, not a port problem."""
    if report is None:
        return []
    out: list[Finding] = []
    pc01 = report.signal("proxy_pc01")
    listening = listening_table(data.log_entries)
    ports = proxy_ports(data.log_entries)
    crashes = recent_logs.raised(report, ("app_exit_nonzero", "crash_loop", "vm_exited_abruptly",
                                      "restart_limit", "oom_kill"))
    if pc01 is not None and len(listening):
        wrong_port = listening[~listening["port"].isin(ports)] if ports else listening.iloc[0:0]
        local = listening[listening["host"].str.lower().isin(LOCAL_HOSTS)]
        want = ", ".join(str(p) for p in ports) or "internal_port"
        evidence = recent_logs.signal_evidence(pc01, 1) + [
            f"{r.machine} at {r.time}: {r.line}" for r in listening.itertuples()]
        if len(local):
            out.append(Finding(
                "nr-logs-listens-on-localhost", "critical",
                f"the app listens on {local.iloc[0]['host']}:{local.iloc[0]['port']}: the proxy "
                f"cannot reach it ({pc01['count']}x PC01)",
                "a server bound to 127.0.0.1 only accepts connections from inside the machine; "
                "Fly's proxy connects over the machine's network. Bind to 0.0.0.0 (or ::), e.g. "
                "HOST=0.0.0.0, then deploy. A restart does not change it.", evidence,
                source="logs"))
        elif len(wrong_port):
            r = wrong_port.iloc[0]
            out.append(Finding(
                "nr-logs-port-mismatch", "critical",
                f"port mismatch: the proxy connects to port {want}, the app listens on "
                f"{r['port']} ({pc01['count']}x PC01)",
                f"the app's own startup line says it listens on {r['host']}:{r['port']}, while "
                f"the proxy tries the service's internal_port ({want}) and is refused. Set "
                f"`internal_port = {r['port']}` in fly.toml (or make the app listen on {want}, "
                "e.g. PORT), deploy — or roll back the release that changed it (rollback "
                "runbook). A restart does not change the port.", evidence, source="logs"))
    if crashes and diag.kind in ("crashing", "checks-failing", "partial", "not-listening"):
        out.append(recent_logs.signals_finding(
            "nr-logs-crashes", "critical" if diag.kind == "crashing" else "warning",
            "the logs show the app exiting", crashes,
            "a process that exits is a crash, not a port problem: read the lines just before "
            "each exit (`fly logs -a …`); an OOM kill → the memory runbook."))
    return out



# --------------------------------------------------------------------------- plan
def plan_actions(diag: Diagnosis, data: NotRespondingData, app: str) -> list[Action]:
    """The seed's remediation for the diagnosis.

    * stopped machines: start them;
    * started machines failing checks, not yet restarted: restart them (all of them is
      ``fly apps restart``);
    * the same after a restart that did not help: "if restart fails, scale down and up" —
      stop them all, then start them all.
    """
    mdf = machines_frame(data.machines or [])
    rows = {r.id: r for r in mdf.itertuples()}

    def basis(mid: str) -> dict[str, Any]:
        r = rows[mid]
        return {"state": r.state, "checks_critical": int(r.checks_critical),
                "last_exit_code": None if r.last_exit_code != r.last_exit_code else r.last_exit_code,
                "updated_at": r.updated_at}

    def act(verb: str, mid: str, title: str, reason: str) -> Action:
        return machine_action(f"machine.{verb}", app, mid, title=title, basis=basis(mid),
                              reason=reason)

    actions: list[Action] = []
    for mid in diag.stopped:
        r = rows[mid]
        actions.append(act("start", mid, f"start {r.state} machine {mid} ({r.region})",
                                      "a stopped machine serves nothing; starting it is the "
                                      "seed's restart for a machine that is not running"))
    if diag.kind not in ("not-listening", "crashing", "checks-failing", "partial") or not diag.unhealthy:
        return actions
    started = list(mdf[mdf["state"] == "started"]["id"])
    every = set(diag.unhealthy) == set(started)
    if diag.persisted_after_restart:
        for mid in diag.unhealthy:
            actions.append(act(
                "stop", mid, f"stop machine {mid} ({rows[mid].region}) — scale down",
                "the seed: if restart fails, scale down and up (`fly scale count 0`, then "
                "`fly scale count N`); stopping and starting keeps each machine's config"))
        for mid in diag.unhealthy:
            actions.append(act(
                "start", mid, f"start machine {mid} ({rows[mid].region}) — scale up",
                "brings the machine back with a fresh boot after the stop above"))
        return actions
    for mid in diag.unhealthy:
        actions.append(act(
            "restart", mid,
            f"restart machine {mid} ({rows[mid].region})"
            + (f" — with the others, `fly apps restart {app}`" if every and len(started) > 1 else ""),
            "the seed's first step for a machine failing its checks"))
    return actions


# --------------------------------------------------------------------------- chart
_STATUS_COLOURS = {"502": "#c62828", "503": "#6a1b9a", "504": "#ef6c00", "500": "#ad1457"}


def edge_chart(data: NotRespondingData) -> Figure:
    """Requests per second at Fly's edge over the window: all, and each 5xx status."""
    fig = Figure(figsize=(9, 3.4))
    ax = fig.subplots()
    edge = edge_frame(data)
    if edge.empty:
        ax.text(0.5, 0.5, "no edge metrics (see findings)", transform=ax.transAxes, ha="center")
    for series, part in edge.groupby("series", sort=True):
        if series == "all":
            ax.fill_between(part["timestamp"], part["rps"], color="#b0bec5", alpha=0.6,
                            label="all responses")
        else:
            ax.plot(part["timestamp"], part["rps"], linewidth=1.6,
                    color=_STATUS_COLOURS.get(str(series), "#37474f"), label=f"HTTP {series}")
    ax.set_ylabel("responses / s")
    ax.set_title(f"Fly edge responses, last {data.window}")
    ax.set_ylim(bottom=0)
    if not edge.empty:
        ax.legend(loc="upper left", fontsize=8)
    time_axis(ax)
    return fig
