"""Run a runbook through the real command line and runner, with its notebook executed in
this process instead of by papermill in a kernel.

Everything but the notebook's execution is the product's own code path: ``python -m opslib
run`` argument parsing and validation (``opslib.cli.main``), the runner's staging, status,
findings, redaction, HTML export, manifest and publishing. Only the step papermill does —
inject the parameters after the ``parameters`` cell, then run each code cell in order — is
done here by an IPython shell in this process, which saves the 3–5 s of kernel start-up and imports per run. The
runbook's analysis (collect → assess → findings/actions) is exactly the code the notebook
calls.

Tests of what papermill and the kernel themselves do (deadlines, a dead kernel, an early
``sys.exit``, rich notebook outputs) use :func:`tests.conftest.opslib_cli`, the real thing.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import traceback
from pathlib import Path
from typing import Any, Iterator

import nbformat
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from opslib import cli, runner
from opslib.evidence import atomic_write_json


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _cwd(path: str) -> Iterator[None]:
    saved = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(saved)


class _Outputs(DisplayPublisher):
    """Collects what cells ``display()`` as notebook outputs, as a kernel would send them
    (rich mime bundles; ``display_id`` updates replace the earlier output)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cell: list[Any] = []
        self.by_id: dict[str, tuple[list[Any], int]] = {}

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False,
                **kwargs) -> None:  # noqa: ANN001 - IPython's signature
        output = nbformat.v4.new_output("display_data", data=data, metadata=metadata or {})
        display_id = (transient or {}).get("display_id")
        if update and display_id in self.by_id:
            outputs, index = self.by_id[display_id]
            outputs[index] = output
            return
        if display_id:
            self.by_id[display_id] = (self.cell, len(self.cell))
        self.cell.append(output)


def run_notebook(job: dict[str, Any], env: dict[str, str]) -> int:
    """The runner's notebook step, in this process: parameters injected as papermill does,
    then every code cell run by an IPython shell in one namespace, its displays and stdout
    kept as the cell's outputs.

    Writes ``job["output"]`` and ``job["exec_result"]`` as ``opslib._execute`` does.
    """
    nb = load_notebook_node(job["input"])  # as papermill loads it (tags filled in)
    nb = parameterize_notebook(nb, job["parameters"], kernel_name=job["kernel_name"],
                               language="python")
    result: dict[str, Any] = {"outcome": "ok", "papermill_version": "in-process (tests)"}
    shell = InteractiveShell.instance()
    publisher = shell.display_pub = _Outputs(shell=shell)
    try:
        with _environment({**env, "MPLBACKEND": "Agg"}), _cwd(job["cwd"]):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                cell.outputs = publisher.cell = []
                out = io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    ran = shell.run_cell(cell.source, silent=True)
                if out.getvalue():
                    cell.outputs.insert(0, nbformat.v4.new_output("stream", name="stdout",
                                                                  text=out.getvalue()))
                exc = ran.error_in_exec or ran.error_before_exec
                if isinstance(exc, SystemExit):
                    result["stopped_early"] = True
                    break
                if exc is not None:  # what papermill reports as PapermillExecutionError
                    result.update(outcome="failed", ename=type(exc).__name__, evalue=str(exc),
                                  cell_index=index)
                    cell.outputs.append(nbformat.v4.new_output(
                        "error", ename=type(exc).__name__, evalue=str(exc),
                        traceback=traceback.format_exception(exc)))
                    break
    finally:
        InteractiveShell.clear_instance()
    nbformat.write(nb, job["output"])
    atomic_write_json(job["exec_result"], result)
    return 0


def opslib_run(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m opslib run …`` as :func:`tests.conftest.opslib_cli` gives it, with the
    notebook executed in this process; same return value (code, stdout, stderr)."""
    from tests.conftest import REPO, clean_env

    stdout, stderr = io.StringIO(), io.StringIO()
    token = runner.notebook_executor.set(run_notebook)
    try:
        with _environment(env if env is not None else clean_env()), _cwd(str(cwd or REPO)), \
                contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        runner.notebook_executor.reset(token)
    return subprocess.CompletedProcess(["opslib", *args], code, stdout.getvalue(),
                                       stderr.getvalue())
