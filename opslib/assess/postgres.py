"""Judgements on what the database itself answered, shared by ``health`` and ``database``."""
from __future__ import annotations

from ..findings import Finding

L2 = "Supabase or database platform problems are handled by the Platform Team (Level 2)"


def in_recovery() -> Finding:
    """``pg_is_in_recovery()`` is true: the DSN reaches a replica, or a restore is running."""
    return Finding("db-in-recovery", "warning",
                   "database is in recovery (a read-only replica, or a restore in progress)",
                   "pg_is_in_recovery() is true: writes will fail. Check DATABASE_URL points at "
                   "the primary and the Supabase project status.", source="postgres",
                   escalate=2, escalate_reason=L2)
