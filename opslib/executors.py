"""Which function applies each kind of planned action: one explicit table.

Every kind in :data:`opslib.actions.KINDS` has an entry (a test checks it), so a runbook
cannot plan an action that nothing can apply. Each executor takes the run's
:class:`~opslib.actions.ApplyContext` (session, live target) and the action.
"""
from __future__ import annotations

from .actions import Executor
from .sources import fly, fly_secrets, postgres

EXECUTORS: dict[str, Executor] = {
    "machine.start": fly.apply_start,
    "machine.restart": fly.apply_restart,
    "machine.stop": fly.apply_stop,
    "machine.update": fly.apply_update,
    "cert.check": fly.apply_cert_check,
    "cert.readd": fly.apply_cert_readd,
    "secrets.set": fly_secrets.apply_set,
    "pg.terminate": postgres.apply_signal,
    "pg.cancel": postgres.apply_signal,
}
