"""Shared fixtures: the CLI as a user runs it, real local servers, a real PostgreSQL 15."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import PostgresServer


@pytest.fixture(autouse=True)
def _close_sessions(monkeypatch):
    """Every opslib Session a test opens is closed when it ends (its HTTP connections with
    it), whether or not the test closed it: a leaked socket is a ResourceWarning."""
    from opslib.session import Session

    opened: list[Session] = []
    original = Session.__init__

    def tracking_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(Session, "__init__", tracking_init)
    yield
    for session in opened:
        session.close()

REPO = Path(__file__).resolve().parent.parent
TEST_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
# Environment variables that must not leak from the developer's shell into tests.
_SCRUB = ("FLY_API_TOKEN", "DATABASE_URL", "SUPABASE_URL", "SUPABASE_ANON_KEY",
          "SUPABASE_ACCESS_TOKEN", "SUPABASE_PROJECT_REF", "OPSLIB_REPORTS", "OPSLIB_NOTEBOOKS",
          "OPSLIB_RUN_DIR", "FLY_FLAPS_BASE_URL", "FLY_API_BASE_URL", "OPS_ON_CALL")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    # Fly's public incidents feed is on the internet: tests never call it (a closed local
    # port answers "refused" at once); tests of the feed point this at a stand-in
    env["FLY_INCIDENTS_URL"] = "http://127.0.0.1:9/v1/incidents"
    env.update(extra)
    return env


def opslib_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
               cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run ``python -m opslib …`` exactly as the Makefile does."""
    return subprocess.run([sys.executable, "-m", "opslib", *args], capture_output=True,
                          text=True, env=env if env is not None else clean_env(), cwd=cwd,
                          timeout=timeout)


def run_dirs(reports: Path) -> list[Path]:
    return sorted(p.parent for p in reports.glob("*/*/EVIDENCE_MANIFEST.json"))


def only_run(reports: Path) -> Path:
    runs = run_dirs(reports)
    assert len(runs) == 1, f"expected one run under {reports}, found {runs}"
    return runs[0]


def findings(run: Path) -> dict:
    return json.loads((run / "findings.json").read_text())


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    return tmp_path / "reports"


@pytest.fixture(scope="session")
def pg():
    """A real PostgreSQL 15 for the whole session (max_connections=20)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers that follow from what a test uses: the real PostgreSQL, the browser, papermill."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "pg" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("notebook"):
            item.add_marker(pytest.mark.slow)
    # the longest tests start first (pytest-xdist hands out tests in collection order), so
    # none of them is left running alone at the end
    items.sort(key=lambda item: item.get_closest_marker("first") is None)
