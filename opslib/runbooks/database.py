"""Database Connection Errors (seed Issue 2): connections vs max, leaks, blockers, Supabase status.

``collect`` does all I/O (Postgres, the Supabase status page, the Management API and the Fly
machine list, concurrently); the ``assess_*`` functions are pure: data in, findings out;
``plan_actions`` turns what was seen into the seed's remediation as gated actions.

The app's recent logs (``fly logs | grep -i "connection\\|pool"``) say what the app was told
when it asked for a connection: Postgres' ``sorry, too many clients already`` / ``remaining
connection slots are reserved``, Supavisor's ``(EMAXCONNSESSION)`` / ``(ECHECKOUTTIMEOUT)``,
refusals and dropped connections; read against the connections now and Supabase's status.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..actions import Action, machine_action
from ..assess import postgres as postgres_checks, recent_logs
from ..assess.postgres import L2
from ..config import Target
from ..errors import SourceAuthError, SourceError, SourceNotFound
from ..findings import Finding
from ..logscan import LogReport
from ..redact import excerpt
from ..reads import Read, Readings, gather, measured
from ..session import Session
from ..sources import fly, postgres
from ..sources import postgres as pgq
from ..sources.fly import machines_frame
from ..sources.fly_models import Machine
from ..sources.status import StatusPage, component_indicator, supabase_status
from ..sources.supabase import MANAGEMENT, SupabaseManagement, health_frame, pooler_frame
from ..thresholds import classify

# Connection errors that mean "every slot is taken" rather than "the database is down".
CAPACITY_KINDS = ("too_many_clients", "reserved_slots", "supavisor_limit")
INFRA_KINDS = ("dns", "refused", "timeout", "ssl", "unavailable", "error")
DB_COMPONENTS = ("database", "pooler", "supavisor", "connection", "postgres")
UNREACHABLE_SIGNALS = ("db_connection_refused", "db_dns_failure", "db_connection_closed",
                       "db_unreachable")
# how each driver turns prepared statements off (for transaction-mode pooling)
PREPARED_FIX = ("Prisma `?pgbouncer=true`, postgres.js `prepare: false`, asyncpg "
                "`statement_cache_size=0`, pgx `default_query_exec_mode=simple_protocol`, "
                "Npgsql `Max Auto Prepare=0`, JDBC `prepareThreshold=0`")


@dataclass(frozen=True)
class DatabaseData:
    readings: Readings

    # Tables as the notebook shows them (None: the source was skipped or failed).
    capacity = measured("database", part="capacity")  # pd.DataFrame | None
    breakdown = measured("database", part="breakdown")  # pd.DataFrame | None
    idle_tx = measured("database", part="idle_tx")  # pd.DataFrame | None
    long_queries = measured("database", part="long_queries")  # pd.DataFrame | None
    blockers = measured("database", part="blockers")  # pd.DataFrame | None
    settings = measured("database", part="settings")  # pd.DataFrame | None
    status = measured()  # StatusPage | None
    project = measured("supabase", part="project")  # dict | None
    services = measured("supabase", part="services")  # list | None
    pooler = measured("supabase", part="pooler")  # list | None
    machines = measured()  # list[Machine] | None

    @property
    def max_connections(self) -> int | None:
        if self.capacity is None or self.capacity.empty:
            return None
        return int(self.capacity.iloc[0]["max_connections"])

    def by(self, column: str) -> pd.DataFrame | None:
        """Connections summed by ``state``, ``usename``, ``application_name`` or ``client_addr``."""
        return None if self.breakdown is None else pgq.by(self.breakdown, column)

    @property
    def status_caption(self) -> str:
        return (f"status.supabase.com: {self.status.description}" if self.status
                else "status.supabase.com: not read")

    @property
    def status_components(self) -> pd.DataFrame | None:
        return self.status.components if self.status else None

    @property
    def status_incidents(self) -> pd.DataFrame | None:
        return self.status.incidents if self.status else None

    @property
    def services_table(self) -> pd.DataFrame | None:
        return None if self.services is None else health_frame(self.services)

    @property
    def pooler_table(self) -> pd.DataFrame | None:
        return None if self.pooler is None else pooler_frame(self.pooler)


def _diagnostics(pg: postgres.Postgres, long_query_s: float) -> dict[str, pd.DataFrame]:
    # One connection, one query at a time: a database short of slots gets one more client.
    return {"capacity": pgq.capacity(pg), "breakdown": pgq.connections(pg),
            "idle_tx": pgq.idle_in_transaction(pg),
            "long_queries": pgq.long_queries(pg, long_query_s), "blockers": pgq.blockers(pg),
            "settings": pgq.settings(pg)}


def _project(api: SupabaseManagement) -> dict[str, Any]:
    return {"project": api.project(), "services": api.health(("db", "pooler")),
            "pooler": api.pooler()}


def collect(session: Session, target: Target, *, long_query_s: float = 60.0,
            log_window_minutes: float = recent_logs.DEFAULT_WINDOW_MIN,
            log_max_pages: int = recent_logs.DEFAULT_MAX_PAGES) -> DatabaseData:
    """Query Postgres, read status.supabase.com, the Management API, the machines and the
    app's recent logs, at once (``log_window_minutes`` of 0 reads no logs)."""
    reads = [
        Read("database", "pg_stat_activity: capacity, sessions, idle transactions, long "
             "queries, blockers, settings", lambda pg: _diagnostics(pg, long_query_s),
             postgres.POSTGRES),
        Read("status", "status.supabase.com",
             lambda: supabase_status(session, target.env("SUPABASE_STATUS_URL")), context=True),
        Read("supabase", "project status, service health and pooler config "
             "(Management API)", _project, MANAGEMENT),
        Read("machines", "the app's machines (to plan an app restart)",
             lambda api: api.list_machines(), fly.MACHINES, context=True),
    ]
    reads += recent_logs.recent(session, log_window_minutes, log_max_pages)
    return DatabaseData(gather(session, target, reads))


# --------------------------------------------------------------------------- analysis
def refused_for_capacity(error: SourceError | None) -> bool:
    return error is not None and error.kind in CAPACITY_KINDS


def assess_connections(capacity: pd.DataFrame | None, breakdown: pd.DataFrame | None,
                       error: SourceError | None,
                       limits: dict[str, tuple[float, float]]) -> list[Finding]:
    """Connections vs ``max_connections`` (seed: warning > 80 %, critical > 95 % of the pool),
    or what the refusal to connect means."""
    if error is not None:
        if refused_for_capacity(error):
            return [Finding("db-refusing-connections", "critical",
                            f"the database refuses new connections ({error.kind})",
                            f"{error.message}. Every connection slot is taken: the app's pool "
                            "is exhausted or leaking. Remediation: restart the app to reset its "
                            "connections, then find the leak.", [error.message],
                            source="postgres")]
        if error.kind in ("auth_failed", "permission", "no_database", "pooler_tenant",
                          "address_not_allowed", "banned", "pooler_auth_query"):
            return [Finding("db-rejected", "critical", f"the database rejected us ({error.kind})",
                            f"{error.message}. {error.hint}", [error.message], source="postgres")]
        return [Finding("db-unreachable", "critical", f"database unreachable ({error.kind})",
                        f"{error.message}. {error.hint}. Check status.supabase.com below.",
                        [error.message], source="postgres", escalate=2, escalate_reason=L2)]
    if capacity is None or capacity.empty:
        return []
    row = capacity.iloc[0]
    pct = float(row["pct"])
    sev = classify(pct, limits["connections_pct"])
    warn, crit = limits["connections_pct"]
    top = pgq.by(breakdown, "application_name") if breakdown is not None else pd.DataFrame()
    lead = (f"; most from {top.iloc[0]['application_name'] or '(no application_name)'} "
            f"({int(top.iloc[0]['connections'])})" if len(top) else "")
    out: list[Finding] = []
    hidden = breakdown[breakdown["state"] == "(none)"] if breakdown is not None and len(breakdown) else None
    if hidden is not None and len(hidden):
        out.append(Finding("db-sessions-hidden", "info",
                           f"{int(hidden['connections'].sum())} session(s) of other roles show no "
                           "state or query to this role",
                           "grant the DATABASE_URL role pg_read_all_stats (or use a role that "
                           "has it) to see what they are doing", source="postgres"))
    return out + [Finding("db-connections", sev,
                    f"{int(row['client_backends'])}/{int(row['max_connections'])} connections "
                    f"in use ({pct:.0f}% of max_connections){lead}",
                    f"thresholds: warning > {warn:.0f}%, critical > {crit:.0f}%. "
                    f"{int(row['usable'])} slots are open to non-superusers "
                    f"({int(row['su_reserved'])} reserved for superusers"
                    + (f", {int(row['reserved'])} for pg_use_reserved_connections" if int(row['reserved']) else "")
                    + "); beyond them clients get 'remaining connection slots are reserved'.",
                    [f"{r.application_name or '(none)'}: {int(r.connections)}"
                     for r in top.head(5).itertuples()] if len(top) else [],
                    source="postgres")]


def leaked(idle_tx: pd.DataFrame | None, threshold_s: float) -> pd.DataFrame:
    """Sessions idle in a transaction for longer than ``threshold_s`` (by transaction age)."""
    if idle_tx is None or idle_tx.empty:
        return pd.DataFrame(columns=list(idle_tx.columns) if idle_tx is not None else [])
    return idle_tx[idle_tx["xact_age_s"].astype(float) > float(threshold_s)]


def assess_idle_in_transaction(idle_tx: pd.DataFrame | None, threshold_s: float,
                               max_connections: int | None) -> list[Finding]:
    """Idle-in-transaction sessions older than ``threshold_s``: a connection leak, usually in
    one application (it opened a transaction and never committed or returned the connection)."""
    if idle_tx is None:
        return []
    old = leaked(idle_tx, threshold_s)
    if old.empty:
        young = len(idle_tx)
        return [Finding("db-idle-in-transaction", "ok",
                        f"no session idle in a transaction for more than {threshold_s:.0f} s",
                        f"{young} younger idle-in-transaction session(s)" if young else "")]
    apps = old["application_name"].replace("", "(no application_name)").value_counts()
    top_app, top_n = apps.index[0], int(apps.iloc[0])
    share = (len(old) / max_connections) if max_connections else 0.0
    sev = "critical" if share >= 0.25 else "warning"
    one_app = top_n == len(old)
    title = (f"{len(old)} session(s) idle in a transaction for > {threshold_s:.0f} s"
             + (f", all from {top_app}: a connection leak" if one_app and len(old) > 1
                else f", {top_n} from {top_app}"))
    oldest = float(old["xact_age_s"].astype(float).max())
    return [Finding("db-idle-in-transaction", sev, title,
                    f"oldest transaction open {oldest:.0f} s; each holds a connection slot and its "
                    "locks. Too many connections: check for connection leaks in the code of "
                    f"{top_app} (a transaction begun and never committed/rolled back, or a "
                    "connection not returned to the pool).",
                    [f"pid {int(r.pid)} {r.application_name or '?'} {r.client_addr} "
                     f"xact {float(r.xact_age_s):.0f} s: {str(r.last_query)[:80]}"
                     for r in old.head(10).itertuples()], source="postgres")]


def assess_long_queries(long_df: pd.DataFrame | None, min_s: float) -> list[Finding]:
    if long_df is None:
        return []
    if long_df.empty:
        return [Finding("db-long-queries", "ok", f"no query running longer than {min_s:.0f} s")]
    return [Finding("db-long-queries", "warning",
                    f"{len(long_df)} quer(y/ies) running longer than {min_s:.0f} s "
                    f"(longest {float(long_df['runtime_s'].max()):.0f} s)",
                    "slow queries hold connections longer and starve the pool",
                    [f"pid {int(r.pid)} {r.application_name or '?'} {float(r.runtime_s):.0f} s "
                     f"({r.wait_event_type or 'cpu'}): {str(r.query)[:80]}"
                     for r in long_df.head(10).itertuples()], source="postgres")]


def assess_blockers(blk: pd.DataFrame | None) -> list[Finding]:
    if blk is None:
        return []
    if blk.empty:
        return [Finding("db-blocked", "ok", "no session is waiting on another's lock")]
    roots = sorted({int(p) for pids in blk["blocked_by"] for p in (pids or [])})
    idle_root = blk["blocker_state"].fillna("").str.contains("idle in transaction").any()
    return [Finding("db-blocked", "warning",
                    f"{len(blk)} session(s) waiting on locks held by pid(s) "
                    f"{', '.join(map(str, roots))}",
                    ("a blocker is idle in a transaction: the leak is also holding locks; "
                     "ending it releases them" if idle_root else
                     "the blockers are working; wait or cancel the blocking query"),
                    [f"pid {int(r.pid)} ({r.application_name or '?'}) waits {float(r.waiting_s or 0):.0f} s "
                     f"on {list(r.blocked_by)} ({r.blocker_state}, {r.blocker_application})"
                     for r in blk.head(10).itertuples()], source="postgres")]


def assess_settings(settings: pd.DataFrame | None) -> list[Finding]:
    if settings is None or settings.empty:
        return []
    row = settings.iloc[0]
    out = []
    if bool(row["in_recovery"]):
        out.append(postgres_checks.in_recovery())
    if str(row["idle_in_transaction_session_timeout"]) in ("0", "0ms", ""):
        out.append(Finding("db-no-idle-timeout", "info",
                           "idle_in_transaction_session_timeout is off",
                           "a leaked transaction holds its connection forever; consider "
                           "ALTER ROLE <app_role> SET idle_in_transaction_session_timeout = '60s'",
                           source="postgres"))
    return out


def assess_status(page: StatusPage | None, error: SourceError | None) -> list[Finding]:
    """status.supabase.com: an outage touching the database or pooler → Level 2."""
    if error is not None:
        return [Finding("supabase-status-unknown", "unknown",
                        "could not read status.supabase.com", f"{error.message}. {error.hint}",
                        source="supabase-status")]
    if page is None:
        return []
    db_level = component_indicator(page, DB_COMPONENTS)
    degraded = page.degraded
    evidence = ([f"{r.name}: {r.status}" for r in degraded.itertuples()]
                + [f"incident: {r.name} ({r.status}, {r.impact})" for r in page.incidents.itertuples()])
    if db_level in ("major", "critical") or page.indicator in ("major", "critical"):
        return [Finding("supabase-outage", "critical",
                        f"Supabase reports an outage: {page.description}",
                        "Supabase down: check https://status.supabase.com; restarting the app "
                        "will not help", evidence, source="supabase-status", escalate=2,
                        escalate_reason="Supabase outage (seed: escalate to Level 2)")]
    if db_level == "minor":
        return [Finding("supabase-degraded", "warning",
                        f"Supabase reports degraded database/pooler components: {page.description}",
                        "check https://status.supabase.com", evidence, source="supabase-status",
                        escalate=2, escalate_reason="Supabase platform issue (seed: Level 2)")]
    if not page.ok:
        return [Finding("supabase-status", "info",
                        f"status.supabase.com: {page.description} (nothing touching the database)",
                        "", evidence, source="supabase-status")]
    return [Finding("supabase-status", "ok", f"status.supabase.com: {page.description}",
                    source="supabase-status")]


# statuses of the Management API spec (v1 project status enum) that mean the project does not serve
PROJECT_DOWN = ("ACTIVE_UNHEALTHY", "INACTIVE", "INIT_FAILED", "REMOVED", "GOING_DOWN",
                "PAUSING", "PAUSE_FAILED", "RESTORE_FAILED")


def assess_project(project: dict | None, services: list | None, pooler: list | None,
                   error: SourceError | None, ref: str = "") -> list[Finding]:
    """Project status and database/pooler health from the Management API."""
    if error is not None:
        sev = "critical" if isinstance(error, SourceNotFound) else "unknown"
        what = ("token refused" if isinstance(error, SourceAuthError)
                else "project not found" if isinstance(error, SourceNotFound) else error.kind)
        return [Finding("supabase-api-error", sev,
                        f"Supabase Management API: {what}", f"{error.message}. {error.hint}",
                        source="supabase-api")]
    out: list[Finding] = []
    status = project.get("status") if isinstance(project, dict) else None
    if project is not None and (not isinstance(status, str) or not status):
        # an answer without a status says nothing about the project: not ok, not down
        out.append(Finding("supabase-project", "unknown",
                           "the Management API answered without a project status",
                           f"answer: {excerpt(project, 160)}", source="supabase-api"))
    elif project is not None:
        if status == "ACTIVE_HEALTHY":
            out.append(Finding("supabase-project", "ok", f"project {ref or project.get('id', '')} "
                               "is ACTIVE_HEALTHY", source="supabase-api"))
        elif status in ("COMING_UP", "RESTARTING", "RESIZING", "UPGRADING", "RESTORING"):
            out.append(Finding("supabase-project", "warning", f"project is {status}",
                               "the database is in a planned transition; connections fail "
                               "until it ends", source="supabase-api", escalate=2,
                               escalate_reason=L2))
        elif status not in PROJECT_DOWN:
            # "UNKNOWN", or a value the Management API spec does not list: not a verdict
            out.append(Finding("supabase-project", "unknown",
                               f"the Management API reports project status {excerpt(status, 40)!r}, "
                               "which says nothing about whether it serves",
                               "check the project in the Supabase dashboard",
                               source="supabase-api"))
        else:
            hint = ("the project is paused: restore it in the Supabase dashboard"
                    if status == "INACTIVE" else "the project is not serving")
            out.append(Finding("supabase-project", "critical", f"project is {status}",
                               hint, source="supabase-api", escalate=2, escalate_reason=L2))
    bad = [s for s in services or [] if isinstance(s, dict)
           and (s.get("status") != "ACTIVE_HEALTHY" or s.get("healthy") is False)]
    if bad:
        out.append(Finding("supabase-services", "critical",
                           "unhealthy: " + ", ".join(f"{s.get('name')} {s.get('status')}" for s in bad),
                           "Supabase's own health check of the database/pooler fails",
                           [f"{s.get('name')}: {s.get('status')} {s.get('error') or ''}".strip()
                            for s in bad], source="supabase-api", escalate=2, escalate_reason=L2))
    elif services:
        out.append(Finding("supabase-services", "ok", "Supabase health: " + ", ".join(
            f"{s.get('name')} {s.get('status')}" for s in services if isinstance(s, dict)),
            source="supabase-api"))
    for p in pooler or []:
        if isinstance(p, dict):
            out.append(Finding(f"supabase-pooler-{p.get('database_type', 'PRIMARY').lower()}", "info",
                               f"pooler: {p.get('pool_mode')} mode, default_pool_size "
                               f"{p.get('default_pool_size')}, max_client_conn {p.get('max_client_conn')}",
                               "transaction mode (port 6543) shares server connections between "
                               "clients; session mode (5432) gives each client its own",
                               source="supabase-api"))
    return out


# --------------------------------------------------------------------------- logs
def assess_logs(report: LogReport | None, capacity: pd.DataFrame | None,
                db_error: SourceError | None, pooler: list | None, status: StatusPage | None,
                limits: dict[str, tuple[float, float]]) -> list[Finding]:
    """What the app was told when it asked for a connection, read against the connections now,
    the pooler's configuration and Supabase's status:

    * ``too many clients`` / ``reserved`` lines and the slots full now: the pool is exhausted
      now (the leak is ongoing); the slots free now: it happened and cleared;
    * Supavisor refusing clients: its pool_size is the limit (session mode hands each client
      a server connection) — unless Supabase reports an outage, when the pooler simply cannot
      reach the database;
    * refused / dropped connections with Supabase degraded: the app sees the outage.
    """
    if report is None:
        return []
    out: list[Finding] = []
    outage = status is not None and (component_indicator(status, DB_COMPONENTS) in
                                     ("minor", "major", "critical")
                                     or status.indicator in ("major", "critical"))
    # the connections in use now, against which both slot and pool failures are read
    pct = float(capacity.iloc[0]["pct"]) if capacity is not None and len(capacity) else None
    full_now = refused_for_capacity(db_error) or (pct is not None and pct > limits["connections_pct"][0])
    slots = report.signal("pg_too_many_connections")
    if slots is not None:
        out.append(Finding(
            "db-logs-slots", "critical" if full_now else "warning",
            f"the app was refused a connection {slots['count']}x for lack of slots {recent_logs.span(slots)}"
            + (f", and {pct:.0f}% of max_connections are in use now" if full_now and pct is not None
               else ", and the slots are still full" if full_now
               else f"; {pct:.0f}% in use now: it cleared" if pct is not None else ""),
            "Postgres answered `sorry, too many clients already` / `remaining connection slots "
            "are reserved`: every slot was taken. "
            + ("It is ongoing: find who holds the connections (by application, idle in "
               "transaction) — the seed's 'connection pool exhausted'." if full_now else
               "It is not happening now: a burst or a leak that was reset (a restart, a "
               "timeout); look for who opened connections at that time, and set "
               "idle_in_transaction_session_timeout."),
            recent_logs.signal_evidence(slots), source="logs"))
    app_pool = report.signal("db_pool_timeout")
    if app_pool is not None:
        out.append(Finding(
            "db-logs-app-pool", "critical",
            f"the app's own connection pool timed out {app_pool['count']}x "
            f"{recent_logs.span(app_pool)}"
            + (f", with {pct:.0f}% of max_connections in use: the database is the limit"
               if full_now and pct is not None else
               f", while only {pct:.0f}% of max_connections are in use: the app's pool is "
               "too small or its connections are held" if pct is not None else ""),
            "The driver's pool (Prisma P2024, SQLAlchemy QueuePool, HikariCP, …) had no free "
            "connection within its timeout. "
            + ("The database's slots are taken too: find who holds them (by application, idle "
               "in transaction)." if full_now else
               "The database has room, so the limit is the app's: connections held by slow or "
               "leaked transactions, or a pool smaller than the concurrency (connection_limit, "
               "pool_size, maximumPoolSize) — check idle-in-transaction sessions from the app."),
            recent_logs.signal_evidence(app_pool), source="logs"))
    prepared = report.signal("db_prepared_statements")
    if prepared is not None:
        cfg = next((p for p in pooler or [] if isinstance(p, dict)), {})
        mode = cfg.get("pool_mode")
        out.append(Finding(
            "db-logs-prepared", "warning",
            f"queries failed on prepared statements {prepared['count']}x "
            f"{recent_logs.span(prepared)}" + (f" (Supavisor pool_mode {mode})" if mode else ""),
            "`prepared statement \"…\" already exists / does not exist` (42P05 / 26000): the "
            "transaction pooler (port 6543) hands each transaction any server connection, so a "
            "statement prepared on one is missing or already there on the next. Turn prepared "
            f"statements off ({PREPARED_FIX}) or use session mode (port 5432).",
            recent_logs.signal_evidence(prepared), source="logs"))
    pool = report.signal("supavisor_pool_exhausted")
    if pool is not None:
        cfg = next((p for p in pooler or [] if isinstance(p, dict)), {})
        size, mode = cfg.get("default_pool_size"), cfg.get("pool_mode")
        if outage:
            detail = ("Supabase reports a database/pooler incident: the pooler cannot reach the "
                      "database, so it has no connection to hand out. Not a sizing problem; "
                      "it ends with the incident.")
        else:
            detail = ("Supavisor ran out of server connections for its clients"
                      + (f" (pool_mode {mode}, default_pool_size {size})" if cfg else "")
                      + ": in session mode (port 5432) each client holds one for its whole "
                      "session, so pool_size is the client limit. Use transaction mode (port "
                      "6543) for short-lived clients, close idle clients, or raise the pool "
                      "size with the compute size.")
        out.append(Finding(
            "db-logs-pooler", "warning" if outage else "critical",
            f"Supavisor refused clients {pool['count']}x {recent_logs.span(pool)}"
            + (" during the Supabase incident" if outage else ""),
            detail, recent_logs.signal_evidence(pool), source="logs"))
    cut = recent_logs.raised(report, UNREACHABLE_SIGNALS)
    if cut and outage:
        out.append(recent_logs.signals_finding(
            "db-logs-outage", "info", "the app's logs show the outage", cut,
            "connections refused or dropped while Supabase reports the incident: restarting "
            "the app will not help; it reconnects when the database is back."))
    return out



# --------------------------------------------------------------------------- chart
_STATE_COLOURS = {"active": "#1565c0", "idle": "#9e9e9e", "idle in transaction": "#c62828",
                  "idle in transaction (aborted)": "#6a1b9a"}


def connections_chart(breakdown: pd.DataFrame, capacity: pd.DataFrame,
                      limits: dict[str, tuple[float, float]]) -> Figure:
    """Connections per application, stacked by state, against max_connections and thresholds."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    if breakdown is None or breakdown.empty:
        ax.text(0.5, 0.5, "no connections data", ha="center", va="center")
        return fig
    pivot = (breakdown.assign(application_name=breakdown["application_name"].replace("", "(none)"))
             .pivot_table(index="application_name", columns="state", values="connections",
                          aggfunc="sum", fill_value=0))
    pivot = pivot.loc[pivot.sum(axis=1).sort_values().index]
    pivot.loc["ALL (vs max)"] = pivot.sum()  # the thresholds apply to this bar
    left = pd.Series(0, index=pivot.index, dtype=float)
    for state in pivot.columns:
        ax.barh(pivot.index, pivot[state], left=left, label=state,
                color=_STATE_COLOURS.get(state, "#ffb300"))
        left += pivot[state]
    if capacity is not None and not capacity.empty:
        mx = float(capacity.iloc[0]["max_connections"])
        total = float(capacity.iloc[0]["client_backends"])
        warn, crit = limits["connections_pct"]
        ax.set_title(f"client connections: {total:.0f} of max_connections {mx:.0f} "
                     f"({total / mx * 100:.0f}%)")
        ax.axvline(mx * warn / 100, color="#ef6c00", linestyle="--", linewidth=1,
                   label=f"warning {warn:.0f}% of max")
        ax.axvline(mx * crit / 100, color="#c62828", linestyle="--", linewidth=1,
                   label=f"critical {crit:.0f}% of max")
        ax.axvline(mx, color="#000000", linewidth=1.5, label=f"max_connections {mx:.0f}")
    ax.set_xlabel("connections")
    ax.legend(loc="lower right", fontsize=7)
    return fig


# --------------------------------------------------------------------------- remediation
def pool_exhausted(findings: list[Finding]) -> bool:
    """The seed's "Connection pool exhausted": connections critical, or refused for capacity."""
    return any(f.id == "db-refusing-connections" or (f.id == "db-connections" and f.severity == "critical")
               for f in findings)


def plan_actions(idle_tx: pd.DataFrame | None, threshold_s: float, findings: list[Finding],
                 machines: list[Machine] | None, app: str, *, restart: bool = True) -> list[Action]:
    """Terminate backends idle in a transaction for longer than ``threshold_s``; when the pool
    is exhausted, restart the app's started machines to reset its connections."""
    actions = [pgq.backend_action("pg.terminate", r, app=app,
                                  reason=f"idle in a transaction for {float(r.xact_age_s):.0f} s "
                                         f"(> {threshold_s:.0f} s): holds a connection and its locks")
               for r in leaked(idle_tx, threshold_s).itertuples()]
    if restart and pool_exhausted(findings) and machines:
        mdf = machines_frame(machines)
        for r in mdf[mdf["state"] == "started"].itertuples():
            actions.append(machine_action(
                "machine.restart", app, r.id,
                title=f"restart machine {r.id} ({r.region}) to reset its database connections",
                basis={"state": r.state, "updated_at": r.updated_at},
                reason="Connection pool exhausted: restart app to reset connections (seed)"))
    return actions
