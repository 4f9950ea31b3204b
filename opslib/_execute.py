"""Child process of the runner: execute one notebook with papermill, then redact and export.

Kept separate so the runner can enforce a wall-clock deadline by killing this process and
its kernel. Writes ``exec_result`` (JSON) describing how execution ended:
``outcome`` ok | failed | timeout | kernel_died, plus ``ename``/``evalue``/``cell_index``.
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from .evidence import atomic_write_json
from .redact import Redactor


def _warm_exporter() -> None:
    try:
        import nbformat
        from nbconvert import HTMLExporter

        HTMLExporter().from_notebook_node(nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_markdown_cell("# warm"), nbformat.v4.new_code_cell("x = 1")]))
    except Exception:  # the real export reports any problem
        pass


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    result: dict = {"outcome": "ok", "papermill_version": papermill.__version__}
    # While the kernel works, this process mostly waits on it: load and warm the HTML
    # exporter meanwhile, so the export after execution costs little.
    warm = threading.Thread(target=_warm_exporter, daemon=True)
    warm.start()
    try:
        papermill.execute_notebook(
            job["input"], job["output"], parameters=job["parameters"],
            kernel_name=job["kernel_name"], cwd=job["cwd"],
            execution_timeout=job["cell_timeout"], start_timeout=60,
            progress_bar=False, log_output=False, request_save_on_cell_execute=True,
        )
    except PapermillExecutionError as exc:
        result.update(outcome="failed", ename=exc.ename, evalue=exc.evalue,
                      cell_index=exc.cell_index)
    except CellTimeoutError as exc:
        result.update(outcome="timeout", ename="CellTimeoutError", evalue=str(exc).splitlines()[0])
    except DeadKernelError as exc:
        result.update(outcome="kernel_died", ename="DeadKernelError", evalue=str(exc))
    except Exception as exc:  # kernel missing, start timeout, unreadable notebook…
        result.update(outcome="failed", ename=type(exc).__name__, evalue=str(exc)[:500])
    if result["outcome"] == "ok":
        # papermill returns normally on sys.exit(0) mid-notebook but flags the notebook.
        try:
            nb = json.loads(Path(job["output"]).read_text(encoding="utf-8"))
            result["stopped_early"] = bool(nb.get("metadata", {}).get("papermill", {})
                                           .get("exception"))
        except (OSError, ValueError):
            result["stopped_early"] = True
    atomic_write_json(job["exec_result"], Redactor.from_env().obj(result))
    from .runner import finalize_notebook

    warm.join()
    finalize_notebook(Path(job["output"]), Path(job["html"]), Redactor.from_env(),
                      fallback_source=Path(job["input"]))
    result["packed"] = True
    atomic_write_json(job["exec_result"], Redactor.from_env().obj(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
