"""Database backup verification (seed Maintenance Windows: "Database backup verification — Daily").

What makes a database restorable, and what this runbook checks for each:

1. **A recent completed base backup** — the Management API's backup list: the newest
   ``COMPLETED`` backup is younger than ``max_age_h`` (24 h for a daily schedule), and no
   backup has ``FAILED`` since.
2. **The WAL since that backup** — without it a restore loses every write after the backup.
   Supabase archives WAL with WAL-G (``walg_enabled``); Postgres itself reports the archiver in
   ``pg_stat_archiver``: a failure newer than the last success means the recovery point is
   stuck at ``last_archived_wal``. This is the restore-readiness check, read from the database.
3. **Point-in-time recovery** (``pitr_enabled``): the window ``physical_backup_data`` reports.

``collect`` does the I/O; ``assess_*`` are pure. Backups are Supabase-managed: there is no
safe automatic remediation, so failures are escalated (data integrity → Level 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from matplotlib.figure import Figure

from ..config import Target
from ..errors import SourceAuthError, SourceError, SourceNotFound
from ..findings import Finding
from ..reads import Read, Readings, gather, measured
from ..session import Session
from ..sources import postgres
from ..sources.supabase import MANAGEMENT, backups_frame
from ..times import iso, parse_time

ARCHIVER_SQL = """
SELECT current_setting('archive_mode') AS archive_mode,
       archived_count, last_archived_wal, last_archived_time,
       failed_count, last_failed_wal, last_failed_time, stats_reset,
       pg_is_in_recovery() AS in_recovery, now() AS server_time
FROM pg_stat_archiver
"""
L2 = ("data integrity concern: backups are Supabase-managed; the Platform Team takes it up "
      "with Supabase support (Level 2)")


@dataclass(frozen=True)
class BackupsData:
    readings: Readings

    body = measured("backups")  # dict | None: The Management API's backup list answer

    @property
    def backups(self) -> pd.DataFrame | None:
        return None if self.body is None else backups_frame(self.body)

    archiver = measured()  # pd.DataFrame | None

    @property
    def settings(self) -> pd.DataFrame | None:
        """region, walg_enabled, pitr_enabled and the physical backup window."""
        if self.body is None:
            return None
        phys = self.body.get("physical_backup_data") or {}
        return pd.DataFrame([{
            "region": self.body.get("region"), "walg_enabled": self.body.get("walg_enabled"),
            "pitr_enabled": self.body.get("pitr_enabled"),
            "earliest_physical_backup": _unix(phys.get("earliest_physical_backup_date_unix")),
            "latest_physical_backup": _unix(phys.get("latest_physical_backup_date_unix"))}])


def _unix(value: object) -> datetime | None:
    if isinstance(value, (int, float)) and value > 0:
        return parse_time(value)
    return None


def collect(session: Session, target: Target) -> BackupsData:
    """The backup list (Management API) and the WAL archiver (Postgres), concurrently."""
    return BackupsData(gather(session, target, [
        Read("backups", "the project's backups and PITR settings (Management API)",
             lambda api: api.backups(), MANAGEMENT),
        Read("archiver", "WAL archiving (pg_stat_archiver)",
             lambda pg: pg.query("backups.archiver", ARCHIVER_SQL), postgres.POSTGRES),
    ]))


# --------------------------------------------------------------------------- analysis
def assess_backups(df: pd.DataFrame | None, body: dict | None, error: SourceError | None,
                   now: datetime, max_age_h: float = 24.0) -> list[Finding]:
    """Newest completed backup vs ``max_age_h`` (warning beyond it, critical beyond twice
    it), failures since, and a project with no restore point at all."""
    if error is not None:
        what = ("token refused" if isinstance(error, SourceAuthError)
                else "project not found" if isinstance(error, SourceNotFound) else error.kind)
        return [Finding("backups-unknown", "unknown", f"could not list backups: {what}",
                        f"{error.message}. {error.hint}", source="supabase-api")]
    if df is None or body is None:
        return []
    out: list[Finding] = []
    completed = df[df["status"] == "COMPLETED"].dropna(subset=["inserted_at"])
    pitr = bool(body.get("pitr_enabled"))
    if completed.empty:
        sev = "warning" if pitr else "critical"
        out.append(Finding("backup-none", sev, "no completed backup in the list",
                           ("point-in-time recovery is the only restore path" if pitr else
                            "there is no restore point: a data loss now is unrecoverable"),
                           [f"{r.inserted_at}: {r.status}" for r in df.head(7).itertuples()],
                           source="supabase-api", escalate=2, escalate_reason=L2))
        return out
    latest = completed.iloc[0]
    age_h = (now - latest["inserted_at"]).total_seconds() / 3600
    sev = "ok" if age_h <= max_age_h else "warning" if age_h <= 2 * max_age_h else "critical"
    failed_since = df[(df["status"] == "FAILED") & (df["inserted_at"] > latest["inserted_at"])]
    evidence = [f"{iso(r.inserted_at) if r.inserted_at is not None else '?'}: {r.status}"
                f"{' (physical)' if r.is_physical_backup else ''}" for r in df.head(7).itertuples()]
    age_text = f"{age_h:.0f} h" if age_h < 72 else f"{age_h / 24:.1f} days"
    title = f"last completed backup {age_text} ago ({iso(latest['inserted_at'])})"
    if len(failed_since):
        sev = "critical" if sev != "ok" else "warning"
        title += f"; {len(failed_since)} failed since"
    detail = (f"daily schedule: expected within {max_age_h:.0f} h" if sev == "ok" else
              f"older than the {max_age_h:.0f} h daily schedule: a restore today loses everything "
              "since then unless WAL/PITR covers it. Check Database → Backups in the Supabase "
              "dashboard and open a ticket with Supabase support.")
    out.append(Finding("backup-latest", sev, title, detail, evidence, source="supabase-api",
                       escalate=2 if sev != "ok" else 0, escalate_reason=L2 if sev != "ok" else ""))
    window = df[df["inserted_at"] > now - timedelta(days=7)]
    older_failures = window[(window["status"] == "FAILED")
                            & (window["inserted_at"] <= latest["inserted_at"])]
    if len(older_failures):
        out.append(Finding("backup-failures", "info",
                           f"{len(older_failures)} backup(s) failed in the last 7 days, "
                           "followed by a success", "",
                           [iso(t) for t in older_failures["inserted_at"]], source="supabase-api"))
    return out


def assess_pitr(body: dict | None, now: datetime, max_age_h: float = 24.0) -> list[Finding]:
    """WAL-G and point-in-time recovery as the Management API reports them."""
    if body is None:
        return []
    walg, pitr = bool(body.get("walg_enabled")), bool(body.get("pitr_enabled"))
    phys = body.get("physical_backup_data") or {}
    earliest = _unix(phys.get("earliest_physical_backup_date_unix"))
    latest = _unix(phys.get("latest_physical_backup_date_unix"))
    if not pitr:
        return [Finding("pitr", "info", f"point-in-time recovery is off (WAL-G "
                        f"{'on' if walg else 'off'})",
                        "restores go back to a daily backup; enable the PITR add-on to restore "
                        "to any second", source="supabase-api")]
    if latest is None:
        return [Finding("pitr", "warning", "PITR is enabled but reports no physical backup window",
                        "", source="supabase-api", escalate=2, escalate_reason=L2)]
    lag_h = (now - latest).total_seconds() / 3600
    sev = "ok" if lag_h <= max_age_h else "critical"
    return [Finding("pitr", sev, f"PITR window {iso(earliest) if earliest else '?'} → {iso(latest)}"
                    + ("" if sev == "ok" else f" (ends {lag_h:.0f} h ago)"),
                    "restorable to any point in this window", source="supabase-api",
                    escalate=2 if sev != "ok" else 0, escalate_reason=L2 if sev != "ok" else "")]


def assess_archiver(archiver: pd.DataFrame | None, error: SourceError | None,
                    body: dict | None) -> list[Finding]:
    """Restore readiness from ``pg_stat_archiver``: is the WAL after the last backup archived?"""
    if error is not None:
        return [Finding("wal-archiver-unknown", "unknown", f"could not read pg_stat_archiver: "
                        f"{error.kind}", f"{error.message}. {error.hint}", source="postgres")]
    if archiver is None or archiver.empty:
        return []
    r = archiver.iloc[0]
    walg = bool((body or {}).get("walg_enabled")) or bool((body or {}).get("pitr_enabled"))
    mode = str(r["archive_mode"])
    if mode == "off":
        sev = "warning" if walg else "info"
        return [Finding("wal-archiving", sev, "WAL archiving is off (archive_mode=off)",
                        ("the Management API says WAL-G/PITR is on, but this database archives "
                         "nothing: check DATABASE_URL points at the project's primary"
                         if walg else "restores can only go back to a base backup"),
                        source="postgres")]
    last_ok = parse_time(r["last_archived_time"])
    last_fail = parse_time(r["last_failed_time"])
    failed = int(r["failed_count"] or 0)
    evidence = [f"archived {int(r['archived_count'] or 0)}, last {r['last_archived_wal']} at {r['last_archived_time']}",
                f"failed {failed}, last {r['last_failed_wal']} at {r['last_failed_time']}"]
    if last_fail is not None and (last_ok is None or last_fail > last_ok):
        return [Finding("wal-archiving", "critical",
                        f"WAL archiving is failing (last failure {iso(last_fail)}, "
                        f"last success {iso(last_ok) if last_ok else 'never'})",
                        f"WAL after {r['last_archived_wal'] or 'the base backup'} is not archived: "
                        "a restore cannot replay past it, and WAL piles up on the database disk",
                        evidence, source="postgres", escalate=2, escalate_reason=L2)]
    if last_ok is None:
        return [Finding("wal-archiving", "warning", "archive_mode is on but no WAL was archived yet",
                        "since the statistics were reset nothing was archived", evidence,
                        source="postgres")]
    return [Finding("wal-archiving", "ok", f"WAL archiving works (last {iso(last_ok)})",
                    f"{failed} failure(s) since the statistics reset, none since the last success",
                    evidence, source="postgres")]


def history_chart(df: pd.DataFrame | None, now: datetime, max_age_h: float = 24.0) -> Figure:
    """Backups over the last two weeks, coloured by status, with the daily deadline."""
    fig = Figure(figsize=(8, 2.4))
    ax = fig.subplots()
    if df is None or df.empty:
        ax.text(0.5, 0.5, "no backups listed", ha="center", va="center")
        return fig
    colours = {"COMPLETED": "#2e7d32", "FAILED": "#c62828", "PENDING": "#ef6c00"}
    recent = df[df["inserted_at"] > now - timedelta(days=14)]
    for status, group in recent.groupby("status"):
        ax.scatter(group["inserted_at"], [status] * len(group), s=60,
                   color=colours.get(status, "#9e9e9e"), label=status, zorder=3)
    ax.axvline(now, color="#000000", linewidth=1, label="now")
    ax.axvspan(now - timedelta(hours=max_age_h), now, color="#2e7d32", alpha=0.08,
               label=f"last {max_age_h:.0f} h")
    ax.set_title("database backups (last 14 days)")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    fig.autofmt_xdate()
    return fig
