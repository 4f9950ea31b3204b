"""Real evidence for the review tests, made once per session and copied per test.

inc-a holds three real runs through the ``run`` contract: ``health`` on the demo target's
``degraded`` scenario, then ``healthy`` (the "after" of a comparison), and the test notebook
``faulty`` failing with ``fault=raise``.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from opslib.evidence import MANIFEST, write_manifest
from tests.conftest import TEST_NOTEBOOKS, clean_env
from tests.inprocess import opslib_run


def _run(reports: Path, *args: str, notebooks: Path | None = None) -> None:
    env = clean_env(OPSLIB_REPORTS=str(reports))
    if notebooks:
        env["OPSLIB_NOTEBOOKS"] = str(notebooks)
    proc = opslib_run("run", *args, env=env)
    assert proc.returncode in (0, 1, 3), proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def evidence(tmp_path_factory) -> Path:
    reports = tmp_path_factory.mktemp("evidence") / "reports"
    _run(reports, "health", "--scenario", "degraded", "--incident", "inc-a")
    _run(reports, "health", "--scenario", "healthy", "--incident", "inc-a")
    _run(reports, "faulty", "-p", "fault=raise", "--incident", "inc-a", notebooks=TEST_NOTEBOOKS)
    return reports


@pytest.fixture
def site(evidence: Path, tmp_path: Path) -> Path:
    """A private copy of the session's evidence (tests damage it)."""
    reports = tmp_path / "reports"
    shutil.copytree(evidence, reports)
    return reports


def runs_of(reports: Path, runbook: str, incident: str = "inc-a") -> list[Path]:
    """The runs of ``runbook`` in time order (a second run in the same second is ``…-N``)."""
    name = re.compile(rf"^\d{{8}}T\d{{6}}Z-{re.escape(runbook)}(-\d+)?$")
    return sorted(p for p in (reports / incident).iterdir() if name.match(p.name))


def degraded(reports: Path) -> Path:
    return runs_of(reports, "health")[0]


def healthy(reports: Path) -> Path:
    return runs_of(reports, "health")[1]


def rewrite(run: Path, mutate) -> None:
    """Change findings.json and re-seal the manifest (the run still verifies)."""
    data = json.loads((run / "findings.json").read_text())
    mutate(data)
    (run / "findings.json").write_text(json.dumps(data, indent=2))
    facts = json.loads((run / MANIFEST).read_text())["run"]
    write_manifest(run, facts)


def copy_run(run: Path, name: str, incident: str | None = None) -> Path:
    dest = run.parent.parent / (incident or run.parent.name) / name
    shutil.copytree(run, dest)
    return dest
