"""opslib: executable runbook notebooks for apps on Fly.io with a Supabase database.

Notebooks call ``opslib.start(runbook, globals())`` and the runbook modules under
``opslib.runbooks``; ``python -m opslib`` is the command line (run, list, verify, …).
"""
__version__ = "0.1.0"


def start(runbook: str, namespace):  # noqa: ANN001 - thin re-export, see opslib.context.start
    """Begin a run; see :func:`opslib.context.start`."""
    from .context import start as _start

    return _start(runbook, namespace)


__all__ = ["__version__", "start"]
