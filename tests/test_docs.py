"""The README is the user's manual: every make target and CLI command must be in it."""
from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO, clean_env, opslib_cli

README = (REPO / "README.md").read_text()


def test_every_make_target_is_in_help_and_readme():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True).stdout
    targets = re.findall(r"^  ([a-z-]+)\s", out, re.M)
    makefile = (REPO / "Makefile").read_text()
    declared = re.findall(r"^([a-z-]+):.*## ", makefile, re.M)
    assert targets and set(targets) == set(declared)
    for t in targets:
        assert f"make {t}" in README, f"make {t} is not documented in README.md"


def test_every_cli_command_is_in_readme():
    out = opslib_cli("--help").stdout
    commands = re.search(r"\{([a-z,-]+)\}", out).group(1).split(",")
    assert {"run", "list", "verify", "logs"} <= set(commands)
    for c in commands:
        assert f"python -m opslib {c}" in README or f"opslib {c}" in README, c


def test_list_shows_runbooks_with_typed_parameters():
    proc = opslib_cli("list", env=clean_env())
    assert proc.returncode == 0
    assert "health: Health Checks" in proc.stdout
    from opslib.catalog import runbooks

    for name in runbooks():
        assert f"\n{name}: " in "\n" + proc.stdout, name
    assert "demo scenarios: degraded, healthy" in proc.stdout
    health = proc.stdout.split("health: Health Checks", 1)[1].split("\n\n", 1)[0]
    line = next(ln for ln in health.splitlines() if ln.strip().startswith("probes "))
    assert "int" in line and "5" in line and "number of /health probes" in line


def test_environment_variables_are_documented():
    from opslib.config import ENVIRONMENT

    for name in ENVIRONMENT:
        assert f"`{name}`" in README, name
