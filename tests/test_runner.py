"""The runner's contract: exit codes, nothing written on bad usage, truthful status, evidence."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from tests.conftest import TEST_NOTEBOOKS, clean_env, findings, only_run, opslib_cli, run_dirs
from tests.inprocess import opslib_run


def faulty_env(reports: Path, **extra: str) -> dict[str, str]:
    return clean_env(OPSLIB_NOTEBOOKS=str(TEST_NOTEBOOKS), OPSLIB_REPORTS=str(reports), **extra)


# ----------------------------------------------------------------------------- bad usage
@pytest.mark.parametrize("args, message", [
    (["run", "no-such-runbook"], "unknown runbook 'no-such-runbook'"),
    (["run", "faulty", "-p", "nope=1"], "unknown parameter 'nope'"),
    (["run", "faulty", "-p", "count=many"], "parameter 'count': expected an integer"),
    (["run", "faulty", "-p", "ratio=fast"], "parameter 'ratio': expected a number"),
    (["run", "faulty", "-p", "verbose=maybe"], "parameter 'verbose': expected true or false"),
    (["run", "faulty", "-p", "a\nimport os; os.system('touch /tmp/pwned')\nb=2"],
     "is not a valid parameter name"),
    (["run", "faulty", "-p", "fault-mode=raise"], "is not a valid parameter name"),
    (["run", "faulty", "-p", "count"], "is not of the form name=value"),
    (["run", "faulty", "-p", "fault=Bearer abcdefghijklmnop"], "looks like a secret"),
    (["run", "faulty", "--target", "replay:/nonexistent"], "holds no capture"),
    (["run", "faulty", "--target", "staging"], "unknown target 'staging'"),
    (["run", "faulty", "--incident", "../escape"], "incident id '../escape'"),
    (["run", "faulty", "--app", "Bad_App!"], "not a valid Fly app name"),
    (["run", "faulty", "--app", "my-app\n"], "not a valid Fly app name"),
    (["run", "faulty", "--incident", "inc-1\n"], "incident id"),
    (["run", "faulty", "--app-url", "https://x.fly.dev/\x1b[2J"], "must be an http(s) URL"),
    (["run", "faulty", "--timeout", "0"], "--timeout must be"),
    (["run", "faulty", "--timeout", "0.5"], "--timeout must be between 1 and 86400"),
    (["run", "faulty", "--timeout", "nan"], "--timeout must be"),
    (["run", "health", "-p", "probes=0"], "out of range: 1 to 100 probes"),
    (["run", "health", "-p", "probe_timeout_s=-1"], "out of range"),
    (["run", "health", "-p", "thresholds=" + '{"a":' * 12 + "1" + "}" * 12], "nested deeper"),
    (["run", "faulty", "--apply", "--confirm", "abc"], "has no remediation to apply"),
    (["run", "health", "--scenario", "nope"], "no demo scenario 'nope' for health"),
])
def test_bad_usage_exits_2_and_writes_nothing(reports, args, message):
    env = faulty_env(reports)
    if args[1] == "health":
        env.pop("OPSLIB_NOTEBOOKS")
    proc = opslib_run(*args, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not reports.exists(), "bad usage must not write anything"
    assert not Path("/tmp/pwned").exists()


def test_unknown_parameter_message_lists_valid_parameters(reports):
    proc = opslib_run("run", "faulty", "-p", "nope=1", env=faulty_env(reports))
    for name in ("fault", "count", "ratio", "verbose", "incident"):
        assert name in proc.stderr


def test_unwritable_reports_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = opslib_run("run", "faulty", env=faulty_env(blocker / "reports"))
    assert proc.returncode == 2
    assert "cannot write evidence under" in proc.stderr
    assert blocker.read_text() == "not a folder"


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Root may write anywhere: as root (CI), act as the user ``nobody`` for the block, as an
    operator without rights to the folder would."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_read_only_reports_exits_2():
    base = Path(tempfile.mkdtemp(prefix="opslib-ro-"))
    base.chmod(0o755)
    reports = base / "reports"
    reports.mkdir()
    reports.chmod(0o555)
    try:
        with unprivileged():
            proc = opslib_run("run", "faulty", env=faulty_env(reports))
    finally:
        reports.chmod(0o755)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot write evidence under" in proc.stderr
    assert list(reports.iterdir()) == []
    shutil.rmtree(base)


# ----------------------------------------------------------------------------- success path
@pytest.mark.notebook
def test_ok_run_packs_verified_evidence(reports):
    proc = opslib_cli("run", "faulty", "--incident", "inc-1", "-p", "count=3", "-p", "verbose=yes",
                      env=faulty_env(reports))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    assert run.parent.name == "inc-1"
    assert run.name.endswith("-faulty")
    f = findings(run)
    assert f["schema"] == 1 and f["status"] == "ok" and f["severity"] == "warning"
    assert f["exit_code"] == 0
    assert {"started_at", "finished_at", "escalation", "actions", "findings"} <= f.keys()
    params = json.loads((run / "parameters.json").read_text())["parameters"]
    assert params["count"] == 3 and params["verbose"] is True and params["incident"] == "inc-1"
    names = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {"faulty.ipynb", "faulty.html", "findings.json", "parameters.json", "run.log",
            "timeline.jsonl", "raw/session.json", "EVIDENCE_MANIFEST.json"} <= names
    manifest = json.loads((run / "EVIDENCE_MANIFEST.json").read_text())
    assert {e["path"] for e in manifest["files"]} == names - {"EVIDENCE_MANIFEST.json"}
    facts = manifest["run"]
    for key in ("runbook", "target", "incident", "parameters", "operator", "tool_version",
                "git_commit", "python_version", "papermill_version", "started_at",
                "finished_at", "status", "exit_code"):
        assert key in facts, key
    assert facts["status"] == "ok" and facts["papermill_version"]
    assert "status: ok" in proc.stdout and "evidence:" in proc.stdout
    assert not any(p.name.startswith(".") for p in run.rglob("*")), "no control files left"
    assert list((reports / ".staging").iterdir()) == []
    verify = opslib_cli("verify", str(reports), env=faulty_env(reports))
    assert verify.returncode == 0, verify.stdout


def test_fail_on_warning_exits_3(reports):
    proc = opslib_run("run", "faulty", "--fail-on", "warning", env=faulty_env(reports))
    assert proc.returncode == 3
    assert findings(only_run(reports))["exit_code"] == 3
    proc = opslib_run("run", "faulty", "--fail-on", "critical", env=faulty_env(reports))
    assert proc.returncode == 0


# ----------------------------------------------------------------------------- failures
@pytest.mark.parametrize("fault, status", [
    ("raise", "failed"),
    ("kill", "kernel_died"),
    ("exit0", "incomplete"),
])
@pytest.mark.notebook
def test_failures_save_evidence_with_true_status(reports, fault, status):
    proc = opslib_cli("run", "faulty", "-p", f"fault={fault}", env=faulty_env(reports))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert f["status"] == status
    assert f["exit_code"] == 1
    assert f["severity"] == "warning", "findings made before the fault are kept"
    assert [x["id"] for x in f["findings"]][0] == "canary"
    # a run that did not finish never says "no findings need action"
    assert f["escalation"]["level"] == 1
    assert f"the runbook did not finish ({status}): diagnose by hand" in f["escalation"]["reason"]
    nb = nbformat.read(str(run / "faulty.ipynb"), as_version=4)
    nbformat.validate(nb)
    assert (run / "faulty.html").stat().st_size > 1000
    assert json.loads((run / "EVIDENCE_MANIFEST.json").read_text())["run"]["status"] == status
    assert opslib_cli("verify", str(run), env=faulty_env(reports)).returncode == 0
    if fault == "raise":
        assert f["error"]["ename"] == "RuntimeError" and "injected failure" in f["error"]["evalue"]


@pytest.mark.notebook
def test_cell_past_timeout_is_timeout_not_completed(reports):
    proc = opslib_cli("run", "faulty", "-p", "fault=sleep", "--timeout", "8.5",  # not whole: nbclient takes int
                      env=faulty_env(reports), timeout=120)
    assert proc.returncode == 1
    run = only_run(reports)
    assert findings(run)["status"] == "timeout"
    assert opslib_cli("verify", str(run), env=faulty_env(reports)).returncode == 0


@pytest.mark.notebook
def test_runner_kills_a_stuck_execution_at_the_deadline(reports, monkeypatch):
    """The parent's wall-clock deadline catches what papermill's own timeouts miss."""
    import subprocess
    import sys

    import psutil

    from opslib import runner

    monkeypatch.setenv("OPSLIB_NOTEBOOKS", str(TEST_NOTEBOOKS))
    monkeypatch.setattr(runner, "KILL_GRACE_S", 0.0)
    # A per-cell timeout far beyond the deadline: only the parent's kill can end this run.
    prep = runner.prepare(runner.RunRequest("faulty", params={"fault": "sleep"}, timeout=6,
                                            reports=reports))
    real_popen = subprocess.Popen

    def popen(cmd, **kw):
        if "opslib._execute" not in cmd:
            return real_popen(cmd, **kw)
        job = Path(cmd[-1])
        data = json.loads(job.read_text())
        data["cell_timeout"] = 600
        job.write_text(json.dumps(data))
        return real_popen(cmd, **kw)

    monkeypatch.setattr(runner.subprocess, "Popen", popen)
    # where Jupyter would put the kernel's connection file (ports and HMAC key)
    runtime = reports.parent / "jupyter-runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("TMPDIR", str(reports.parent))
    tempfile.tempdir = None  # TMPDIR is read again
    before = {p.pid for p in psutil.process_iter()}
    try:
        outcome = runner.execute(prep)
    finally:
        tempfile.tempdir = None
        monkeypatch.delenv("TMPDIR")
    assert outcome.status == "timeout" and outcome.exit_code == 1
    # the killed kernel left no connection file (ports and HMAC key) anywhere
    left = [p for p in reports.parent.rglob("*.json") if '"signature_scheme"' in p.read_text()]
    assert left == [] and not list(reports.parent.glob("opslib-kernel-*"))
    def ours(p: psutil.Process) -> bool:  # other suites may run kernels on this machine too
        try:
            return str(reports) in p.cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if p.pid not in before and "ipykernel_launcher" in " ".join(p.info["cmdline"] or [])
                 and ours(p)]
    assert leftovers == [], "the kernel must be killed with the execution"
    assert opslib_cli("verify", str(outcome.path)).returncode == 0
    assert sys.executable


# ----------------------------------------------------------------------------- tampering
def test_verifier_names_every_tampered_file(reports):
    assert opslib_run("run", "faulty", env=faulty_env(reports)).returncode == 0
    run = only_run(reports)
    data = bytearray((run / "findings.json").read_bytes())
    data[10] ^= 0x01  # same size, one byte
    (run / "findings.json").write_bytes(bytes(data))
    (run / "run.log").unlink()
    (run / "raw" / "extra.txt").write_text("planted")
    (run / "planted-top.txt").write_text("planted")
    proc = opslib_run("verify", str(run), env=faulty_env(reports))
    assert proc.returncode == 1
    out = proc.stdout
    assert "modified      findings.json" in out and "expected" in out and "found" in out
    assert "missing       run.log" in out
    assert "extra         raw/extra.txt" in out
    assert "extra         planted-top.txt" in out


def test_verify_rejects_unsafe_manifest_paths_and_symlinks(reports, tmp_path):
    assert opslib_run("run", "faulty", env=faulty_env(reports)).returncode == 0
    run = only_run(reports)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret outside")
    (run / "raw" / "link").symlink_to(outside)
    manifest = json.loads((run / "EVIDENCE_MANIFEST.json").read_text())
    manifest["files"] += [{"path": "../../outside.txt", "sha256": "0" * 64, "size": 1},
                          {"path": "/etc/passwd", "sha256": "0" * 64, "size": 1}]
    (run / "EVIDENCE_MANIFEST.json").write_text(json.dumps(manifest))
    proc = opslib_run("verify", str(run), env=faulty_env(reports))
    assert proc.returncode == 1
    assert "unsafe_path   ../../outside.txt" in proc.stdout
    assert "unsafe_path   /etc/passwd" in proc.stdout
    assert "unsafe_path   raw/link" in proc.stdout


def test_verify_reports_missing_and_unreadable_manifests(reports):
    assert opslib_run("run", "faulty", env=faulty_env(reports)).returncode == 0
    assert opslib_run("run", "faulty", env=faulty_env(reports)).returncode == 0
    a, b = run_dirs(reports)
    (a / "EVIDENCE_MANIFEST.json").write_text("{not json")
    (b / "EVIDENCE_MANIFEST.json").unlink()
    proc = opslib_run("verify", str(reports), env=faulty_env(reports))
    assert proc.returncode == 1
    assert "unreadable manifest" in proc.stdout and "manifest is missing" in proc.stdout
    assert "0/2 runs verified" in proc.stdout
    assert opslib_run("verify", str(reports / "nope"), env=faulty_env(reports)).returncode == 2


# ----------------------------------------------------------------------------- secrets
CANARIES = {
    "FLY_API_TOKEN": "fo1_CanaryFlyToken0123456789abcdefghijklmnopqrstu",
    "DATABASE_URL": "postgresql://postgres.ref:CanaryDbPassw0rd@db.example.supabase.co:6543/postgres",
    "SUPABASE_ANON_KEY": ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoiYW5vbiIsImNhbmFyeSI6MX0"
                          ".CanarySignatureXYZ0123456789"),
    "SUPABASE_ACCESS_TOKEN": "sbp_" + "c0ffee" * 6 + "cafe",
}


@pytest.mark.notebook
def test_secrets_never_reach_the_evidence(reports):
    proc = opslib_cli("run", "faulty", "-p", "fault=secrets", env=faulty_env(reports, **CANARIES))
    assert proc.returncode == 1
    run = only_run(reports)
    needles = set(CANARIES.values()) | {"CanaryDbPassw0rd"}
    for path in run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle.encode() not in data, f"{needle[:12]}… leaked into {path.name}"
    nb_text = (run / "faulty.ipynb").read_text()
    assert "[REDACTED]" in nb_text
    assert "[REDACTED]" in findings(run)["findings"][-1]["detail"] or "[REDACTED]" in nb_text
    assert needles.isdisjoint(proc.stdout + proc.stderr)
