"""Post-incident review: a static site over ``reports/``, replay checks, compare and triage.

* :func:`build_site` — ``reports/index.html`` and the pages under ``reports/_review/``
  (incidents, runs, timelines, postmortem drafts, comparisons); incremental, atomic writes.
* :func:`check_replay` — re-run a saved run against its own capture and compare findings.
* :func:`compare` — findings added, resolved and changed between two runs, metrics side by side.
* :func:`triage` — every read-only runbook into one incident, bounded by the machine's cores.

The command line is ``python -m opslib review|compare|triage`` (:mod:`opslib.review.cli`).
"""
from importlib import import_module
from typing import Any

# Imported on first use: ``python -m opslib`` registers the CLI from this package and should
# not pay for the site builder on every command.
_EXPORTS = {"build_site": "site", "check_replay": "replay", "compare": "compare",
            "triage": "triage", "next_step": "triage", "read_run": "scan", "RunSummary": "scan"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_site", "check_replay", "compare", "triage", "next_step", "read_run",
           "RunSummary"]
