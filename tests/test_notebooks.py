"""Every runbook notebook as users get it: stored clean, and executed end to end by papermill
in a real kernel on its default demo scenario.

The other runbook tests run the notebooks' code in this process (tests/inprocess.py); here
each notebook runs once through papermill (one test each, spread over the workers), and its
findings must equal the in-process run's — so the faster path is shown to test what users run.
"""
from __future__ import annotations

import ast
import json

import nbformat
import papermill
import pytest

from opslib import runner
from opslib.catalog import notebooks_dir, runbooks
from tests.conftest import _SCRUB as SCRUB, clean_env, findings, only_run
from tests.inprocess import opslib_run

NOTEBOOKS = sorted(notebooks_dir().glob("*.ipynb"))


def test_there_is_a_notebook_per_runbook_of_the_design():
    assert {p.stem for p in NOTEBOOKS} == {
        "health", "not-responding", "database", "memory", "tls", "auth", "deploy", "rollback",
        "scale-down", "monitoring", "logs", "backups"}


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name", [p.stem for p in NOTEBOOKS])
def test_every_notebook_runs_end_to_end_in_papermill_like_in_process(name, tmp_path, monkeypatch):
    """One notebook per test, so the suite's workers share the twelve kernels."""
    for var in SCRUB:
        monkeypatch.delenv(var, raising=False)
    assert name in runbooks()
    outcome = runner.execute(runner.prepare(runner.RunRequest(
        name, incident=name, reports=tmp_path / "papermill")))
    run = outcome.path
    f = findings(run)
    assert f["status"] == "ok", (name, f.get("error"))
    assert f["findings"], f"{name}: no findings"
    manifest = json.loads((run / "EVIDENCE_MANIFEST.json").read_text())
    assert manifest["run"]["papermill_version"] == papermill.__version__, name
    executed = nbformat.read(str(run / f"{name}.ipynb"), as_version=4)
    assert executed.metadata.papermill.get("exception") is None, name
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    html = (run / f"{name}.html").read_text()
    assert "App Name" in html and "Demo target" in html, f"{name}: header not rendered"
    # the same run in process asks the same questions and finds the same
    reports = tmp_path / "inprocess" / name
    proc = opslib_run("run", name, env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    twin = findings(only_run(reports))
    for key in ("severity", "findings", "actions", "escalation", "plan_digest"):
        assert twin.get(key) == f.get(key), (name, key)


LOGIC = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.For, ast.While,
         ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Try)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean_with_calls_into_opslib_only(path):
    """Notebooks hold narrative plus calls into opslib: no outputs, one parameters cell first,
    and no logic of their own (no functions, loops, comprehensions or try blocks) — all logic
    lives in opslib, where it is tested."""
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, path.name
    for c in code:
        assert c.outputs == [] and c.execution_count is None, f"{path.name}: stored with outputs"
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0], f"{path.name}: the first code cell, and only it, is tagged parameters"
    assert any(c.cell_type == "markdown" for c in nb.cells), f"{path.name}: no narrative"
    for c in code:
        tree = ast.parse(c.source)
        for node in ast.walk(tree):
            assert not isinstance(node, LOGIC), (
                f"{path.name}: {type(node).__name__} in a cell — move it into opslib:\n{c.source}")
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert all(n == "opslib" or n.startswith("opslib.") for n in names), (
                f"{path.name}: imports {names}; notebooks import opslib only")
