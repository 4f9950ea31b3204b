"""Run a runbook headless and pack its evidence.

1. *Prepare* (nothing written): the runbook exists, parameters match the notebook's declared
   names and types, the target and incident are valid, secrets are not parameters.
2. *Execute* in a private staging folder (``reports/.staging/…``, mode 0700) by a child
   process running papermill, bounded by a wall-clock deadline; the parent kills the child
   and its kernel if it passes the deadline (papermill's own timeouts do not cover every hang,
   see reference/reliability-security.md §2).
3. *Derive the status truthfully*: papermill marks cells "completed" after a timeout or a dead
   kernel and returns normally on ``sys.exit(0)``, so status comes from the exception type and
   from whether the notebook reached ``run.finish()``.
4. *Pack*: redact every file, export HTML from the redacted notebook, write findings,
   parameters, run.log and the SHA-256 manifest, then move the folder into
   ``reports/<incident>/<UTC-timestamp>-<runbook>/`` with one atomic rename.

Exit codes: 0 completed (severity below ``fail_on``), 1 the runbook failed to execute
(evidence saved), 2 bad usage or configuration (nothing written), 3 severity reached
``fail_on``. ``unknown`` (a check the verdict rests on could not run) reaches every
``fail_on`` but ``never``: blind is not green, unless ``allow_unknown`` says otherwise.
"""
from __future__ import annotations

import contextlib
import errno
import getpass
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .catalog import REPO_ROOT, Runbook, get_runbook, validate
from .config import DEMO_APP, check_app, env, parse_target, resolve_app_url
from .errors import EvidenceError, UsageError
from .evidence import MANIFEST, atomic_write_bytes, atomic_write_json, atomic_write_text, write_manifest
from .findings import FINDINGS_SCHEMA, rank
from .redact import Redactor
from .times import iso

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SEVERITY = 0, 1, 2, 3
FAIL_ON = ("never", "warning", "critical")
DEFAULT_TIMEOUT_S = 600.0
KILL_GRACE_S = 20.0
_INCIDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
STAGING = ".staging"
# Parameters every runbook declares and the command line sets with its own flags.
TARGET_PARAMS = ("app", "app_url", "target", "scenario", "incident")


def reports_dir() -> Path:
    return Path(env("OPSLIB_REPORTS") or REPO_ROOT / "reports")


@dataclass
class RunRequest:
    runbook: str
    app: str = ""
    app_url: str = ""
    incident: str = ""
    target: str = ""
    scenario: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    fail_on: str = "never"
    allow_unknown: bool = False  # the old behaviour: `unknown` does not reach fail_on
    timeout: float = DEFAULT_TIMEOUT_S
    reports: Path | None = None
    apply: bool = False
    confirm: str = ""
    replay_unverified: bool = False  # replay evidence that does not verify (marked so)


@dataclass
class Prepared:
    request: RunRequest
    runbook: Runbook
    parameters: dict[str, Any]
    target_kind: str
    incident: str
    reports: Path
    replay: dict[str, Any] | None = None  # the replayed run and whether it verified


@dataclass
class RunOutcome:
    path: Path
    status: str
    severity: str
    exit_code: int
    findings: dict[str, Any]


# --------------------------------------------------------------------------- prepare
def prepare(req: RunRequest) -> Prepared:
    """Validate everything about a run; raise UsageError before anything is written."""
    if req.fail_on not in FAIL_ON:
        raise UsageError(f"--fail-on must be one of {', '.join(FAIL_ON)}, got {req.fail_on!r}")
    if not (1 <= req.timeout <= 24 * 3600) or req.timeout != req.timeout:
        raise UsageError(f"--timeout must be between 1 and 86400 seconds, got {req.timeout}")
    rb = get_runbook(req.runbook)
    missing = [p for p in TARGET_PARAMS if rb.param(p) is None]
    if missing:
        raise UsageError(f"runbook {rb.name} does not declare {', '.join(missing)} in its "
                         "parameters cell", hint="every runbook declares app, app_url, target, "
                         "scenario and incident")
    given: dict[str, Any] = dict(req.params)
    for name in TARGET_PARAMS:
        flag_value = getattr(req, name)
        if flag_value:
            if name in given and given[name] != flag_value:
                raise UsageError(f"{name} given twice (--{name.replace('_', '-')} and -p {name}=…)")
            given[name] = flag_value
    if {"apply", "confirm"} & set(req.params):
        raise UsageError("apply and confirm are not -p parameters; use --apply --confirm DIGEST "
                         "(make: apply=true confirm=DIGEST)")
    if (req.apply or req.confirm) and rb.param("apply") is None:
        raise UsageError(f"runbook {rb.name} has no remediation to apply",
                         hint="only runbooks with planned actions accept --apply")
    if req.apply:
        if kind_hint(req, rb) != "live":
            raise UsageError("--apply works on a live target only (give --app)",
                             hint="the demo and replay targets have nothing to change")
        if not req.confirm:
            raise UsageError("--apply needs --confirm <plan digest> from a previous run's plan",
                             hint="run once without --apply, read plan_digest in findings.json")
        given["apply"] = True
        given["confirm"] = req.confirm
    elif req.confirm:
        raise UsageError("--confirm without --apply: say --apply to apply the plan")

    validate(rb, given)  # names and types first: the most common mistake gets its message
    app, app_url = str(given.get("app") or ""), str(given.get("app_url") or "")
    check_app(app)
    if app_url:
        resolve_app_url(app, app_url)
    target_spec = str(given.get("target") or rb.param("target").default or "")
    kind, capture = parse_target(target_spec, app=app, app_url=app_url)
    replay = None
    if kind == "replay":
        replay = _check_replay_source(capture, req.replay_unverified)
        base = _replayed_parameters(capture)
        for name, value in base.items():
            if (name not in given and rb.param(name) is not None
                    and name not in ("target", "scenario", "incident", "apply", "confirm")):
                given[name] = value
        given["target"] = f"replay:{capture.resolve()}"
    else:
        given["target"] = kind
    if kind == "demo":
        from .context import demo_scenarios

        scenario = str(given.get("scenario") or rb.param("scenario").default or "healthy")
        known = demo_scenarios(rb.name)
        if scenario not in known:
            raise UsageError(f"no demo scenario {scenario!r} for {rb.name}; "
                             f"scenarios: {', '.join(known) or '(none)'}")
        given["scenario"] = scenario
        given["app"] = app or DEMO_APP
    elif given.get("scenario"):
        raise UsageError("scenario= applies to the demo target only")
    incident = str(given.get("incident") or "") or default_incident(app, app_url, kind)
    if not _INCIDENT_RE.fullmatch(incident):
        raise UsageError(f"incident id {incident!r} must be 1-80 letters, digits, '.', '_' or '-'"
                         ", starting with a letter or digit")
    given["incident"] = incident
    parameters = validate(rb, given)
    reports = Path(req.reports) if req.reports else reports_dir()
    return Prepared(req, rb, parameters, kind, incident, reports, replay)


def _check_replay_source(capture: Path, allow_unverified: bool) -> dict[str, Any]:
    """Replay only evidence that verifies: a tampered or manifest-less capture would make a
    new run that verifies OK while resting on nothing. ``allow_unverified`` replays it anyway
    and the new run says so."""
    from .evidence import verify_run

    source = capture.parent if capture.name == "raw" else capture
    check = verify_run(source)
    if check.ok:
        return {"source": str(source.resolve()), "verified": True}
    problems = [str(p) for p in check.problems[:5]]
    if not allow_unverified:
        raise UsageError(f"refusing to replay {source}: its evidence does not verify "
                         f"({problems[0].strip()})",
                         hint=f"`make verify path={source}` shows why; --replay-unverified "
                              "replays it anyway and marks the new run as resting on "
                              "unverified evidence")
    return {"source": str(source.resolve()), "verified": False, "problems": problems}


def kind_hint(req: RunRequest, rb: Runbook) -> str:
    spec = req.target or str(req.params.get("target") or "") or str(rb.param("target").default or "")
    if spec.startswith("replay:"):
        return "replay"
    return spec or ("live" if req.app or req.app_url or req.params.get("app") else "demo")


def default_incident(app: str, app_url: str = "", kind: str = "") -> str:
    """``<app>-<YYYYMMDD>``; a live run given only a URL is named after its host, never
    filed with the demo runs."""
    name = app
    if not name and app_url and kind != "demo":
        from urllib.parse import urlsplit

        host = (urlsplit(app_url).hostname or "").split(".")[0]
        name = re.sub(r"[^A-Za-z0-9._-]", "-", host)[:60].strip("-._") or "live"
    return f"{name or 'demo'}-{datetime.now(timezone.utc):%Y%m%d}"


def _replayed_parameters(capture: Path) -> dict[str, Any]:
    """The parameters of the run being replayed, so the replay asks the same questions."""
    path = capture.parent / "parameters.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("parameters") or {})
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- staging
def _make_staging(reports: Path) -> Path:
    """A private (0700) folder for one run under ``reports/.staging/`` (itself 0700). Runs
    stranded there by an interrupted run (its process is gone) are removed first — they may
    hold an unredacted notebook — and said on stderr."""
    try:
        root = reports / STAGING
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        _remove_stranded(root)
        # who packs it, next to it (never inside: it would be evidence), written *before* the
        # folder exists: a run starting at the same moment (triage runs several in one
        # process) must never see this folder without its owner and take it for stranded
        for _ in range(100):
            name = f"run-{secrets.token_hex(6)}"
            marker = root / f"{name}.pid"
            try:
                with open(marker, "x", encoding="utf-8") as fh:
                    fh.write(str(os.getpid()))
            except FileExistsError:
                continue
            staging = root / name
            staging.mkdir(mode=0o700)
            return staging
        raise OSError(errno.EEXIST, "no free staging name")
    except OSError as exc:
        raise UsageError(f"cannot write evidence under {reports}: {exc.strerror or exc}",
                         hint="make reports/ writable or set OPSLIB_REPORTS to a writable folder"
                         ) from None


def _drop(staging: Path) -> None:
    """Remove a staging run and its owner marker (nothing unpublished is left behind)."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.with_name(staging.name + ".pid").unlink(missing_ok=True)


def _remove_stranded(root: Path) -> None:
    import psutil

    def owner(marker: Path) -> int:
        try:
            return int(marker.read_text(encoding="utf-8").strip() or 0)
        except (OSError, ValueError):
            return 0

    for entry in root.iterdir():
        if entry.suffix == ".pid" and not entry.with_suffix("").exists():
            pid = owner(entry)
            if not (pid and psutil.pid_exists(pid)):  # a live owner may be creating its folder
                entry.unlink(missing_ok=True)  # its run was published or removed
            continue
        if not entry.is_dir() or not entry.name.startswith("run-"):
            continue
        marker = entry.with_name(entry.name + ".pid")
        pid = owner(marker)
        if pid and psutil.pid_exists(pid):
            continue  # another run, still going
        shutil.rmtree(entry, ignore_errors=True)
        marker.unlink(missing_ok=True)
        print(f"opslib: removed {entry}, left by an interrupted run (unpublished, possibly "
              "unredacted)", file=sys.stderr)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _operator() -> str:
    who = env("OPS_OPERATOR")
    if who:
        return who
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _kernel_name() -> str:
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "opslib" / "kernel.json"
    return "opslib" if spec.is_file() else "python3"


# --------------------------------------------------------------------------- execute
def kill_tree(pid: int, *, including: bool = True) -> None:
    """Kill every descendant of ``pid`` (and ``pid`` itself when ``including``), then reap."""
    import psutil

    try:
        parent = psutil.Process(pid)
        victims = parent.children(recursive=True) + ([parent] if including else [])
    except psutil.Error:
        return
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=10)


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the child and every descendant (the kernel runs in its own session)."""
    kill_tree(proc.pid)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        pass


# Who executes the notebook: None is papermill in a child process with a kernel (what users
# get). The test suite sets an in-process executor for the runs whose subject is the
# runbook's analysis rather than papermill (tests/inprocess.py); it is a context variable, so
# threads (triage) and everything outside that context use papermill.
NotebookExecutor = Callable[[dict[str, Any], dict[str, str]], int]
notebook_executor: ContextVar[NotebookExecutor | None] = ContextVar("opslib_notebook_executor",
                                                                    default=None)


def _execute_in_child(job_path: Path, child_env: dict[str, str], staging: Path, timeout: float,
                      note: Callable[[str], None]) -> tuple[bool, int | None]:
    """Run ``opslib._execute`` on the job, killing it and its kernel past the deadline.

    Returns (killed, return code).
    """
    deadline = time.monotonic() + timeout + KILL_GRACE_S
    # the kernel's connection file (its ports and HMAC key; jupyter_client writes it with
    # mkstemp) and any temporary file of the execution live in a folder of this run's own,
    # removed however the execution ends: a killed kernel leaves nothing behind
    runtime = tempfile.mkdtemp(prefix="opslib-kernel-")
    child_env = {**child_env, "JUPYTER_RUNTIME_DIR": runtime, "TMPDIR": runtime}
    try:
        return _watch_child(job_path, child_env, staging, timeout, note, deadline)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def _watch_child(job_path: Path, child_env: dict[str, str], staging: Path, timeout: float,
                 note: Callable[[str], None], deadline: float) -> tuple[bool, int | None]:
    with open(staging / ".child.log", "wb") as errfh:
        proc = subprocess.Popen([sys.executable, "-m", "opslib._execute", str(job_path)],
                                stdout=errfh, stderr=subprocess.STDOUT, env=child_env,
                                cwd=str(staging), start_new_session=True)
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    note(f"deadline of {timeout:.0f}s (+{KILL_GRACE_S:.0f}s grace) passed; "
                         "killing the execution and its kernel")
                    _kill_tree(proc)
                    return True, proc.returncode
                time.sleep(0.05)
        except BaseException:
            # Interrupted (Ctrl-C, CI cancelling): stop the kernel, and leave no unredacted
            # staging files behind.
            _kill_tree(proc)
            _drop(staging)
            raise
    return False, proc.returncode


def execute(prep: Prepared) -> RunOutcome:
    """Execute a prepared run and pack its evidence; see the module docstring."""
    req, rb = prep.request, prep.runbook
    staging = _make_staging(prep.reports)
    redactor = Redactor.from_env()
    started = datetime.now(timezone.utc)
    log: list[str] = []

    def note(msg: str) -> None:
        log.append(f"{iso(datetime.now(timezone.utc))} {msg}")

    note(f"opslib {__version__} run {rb.name} target={prep.target_kind} incident={prep.incident}")
    nb_out = staging / f"{rb.name}.ipynb"
    job = {
        "input": str(rb.path), "output": str(nb_out), "parameters": prep.parameters,
        "kernel_name": _kernel_name(), "cwd": str(staging), "cell_timeout": math.ceil(req.timeout),  # nbclient takes whole seconds
        "html": str(staging / f"{rb.name}.html"), "exec_result": str(staging / ".exec.json"),
    }
    job_path = staging / ".job.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    child_env = dict(os.environ, OPSLIB_RUN_DIR=str(staging), OPSLIB_INCIDENT=prep.incident,
                     MPLBACKEND="module://matplotlib_inline.backend_inline",
                     PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                              os.environ.get("PYTHONPATH")])))
    executor = notebook_executor.get()
    if executor is None:
        killed, returncode = _execute_in_child(job_path, child_env, staging, req.timeout, note)
    else:
        killed, returncode = False, executor(job, child_env)
    result = _read_json(staging / ".exec.json") or {}
    status, error = derive_status(result, killed=killed, returncode=returncode,
                                  findings=_read_json(staging / "findings.json"))
    note(f"execution ended: status={status}" + (f" ({error.get('ename')}: {error.get('evalue')})"
                                                 if error else ""))
    if not result.get("packed"):
        # The child did not get as far as redacting and exporting: do it here.
        finalize_notebook(nb_out, staging / f"{rb.name}.html", redactor,
                          fallback_source=rb.path)
    finished = datetime.now(timezone.utc)

    try:
        findings = _final_findings(prep, staging, status, error, started, finished)
        exit_code = outcome_exit_code(status, findings["severity"], req.fail_on,
                                      (findings.get("apply") or {}).get("outcome", ""),
                                      allow_unknown=req.allow_unknown)
        findings["exit_code"] = exit_code
        atomic_write_json(staging / "findings.json", redactor.obj(findings))
        safe_params = redactor.obj(prep.parameters)
        atomic_write_json(staging / "parameters.json", {
            "runbook": rb.name, "target": prep.target_kind, "parameters": safe_params,
            "given": redactor.obj({**req.params}),
        })
        with open(staging / "timeline.jsonl", "a", encoding="utf-8") as fh:
            for ev in ({"ts": iso(started), "source": "runner", "operation": "run started",
                        "target": rb.name, "outcome": "ok"},
                       {"ts": iso(finished), "source": "runner", "operation": "run finished",
                        "target": rb.name, "outcome": status,
                        "duration_ms": round((finished - started).total_seconds() * 1000, 1)}):
                fh.write(json.dumps(ev) + "\n")
        child_log = staging / ".child.log"
        child_text = child_log.read_text(encoding="utf-8", errors="replace") if child_log.exists() else ""
        run_log = "\n".join(log) + "\n--- execution log ---\n" + child_text
        atomic_write_text(staging / "run.log", redactor.text(run_log))
        for control in (".job.json", ".exec.json", ".child.log"):
            (staging / control).unlink(missing_ok=True)
        _scrub(staging, redactor)
        facts = {
            "runbook": rb.name, "target": prep.target_kind, "app": prep.parameters.get("app", ""),
            "incident": prep.incident, "parameters": safe_params, "operator": _operator(),
            "tool_version": __version__, "git_commit": _git_commit(),
            "python_version": platform.python_version(),
            "papermill_version": result.get("papermill_version", ""),
            "started_at": iso(started), "finished_at": iso(finished),
            "status": status, "exit_code": exit_code,
        }
        if prep.replay is not None:
            facts["replayed_from"] = prep.replay
        with _incident_lock(prep.reports / prep.incident):  # the chain stays one line
            _notify(staging, findings, redactor,
                    _free_name(prep.reports / prep.incident, started, rb.name), prep.reports)
            write_manifest(staging, redactor.obj(facts), incident_dir=prep.reports / prep.incident)
            final = _publish(staging, prep.reports / prep.incident, started, rb.name)
    except OSError as exc:
        _drop(staging)
        if exc.errno == errno.ENOSPC:
            raise EvidenceError(f"the disk is full: the evidence of this {rb.name} run could not "
                                "be packed and nothing was published",
                                hint="free space under the reports folder and run again") from None
        raise
    except BaseException:  # Ctrl-C while packing: no half-packed, unredacted run is left
        _drop(staging)
        raise
    return RunOutcome(final, status, findings["severity"], exit_code, findings)


def pack_interactive(run_dir: Path, runbook: str, incident: str, notebook: Path | None,
                     parameters: dict[str, Any], started: datetime) -> Path:
    """The evidence of a run stepped through in JupyterLab, packed as ``make run`` packs it:
    findings, raw captures, timeline, charts, the notebook as the engineer saved it (and its
    HTML), parameters, run.log and the manifest, under ``reports/<incident>/``.

    ``notebook`` is the saved notebook (Jupyter gives its path); without it the runbook's
    stored notebook stands in and run.log says so.
    """
    reports = reports_dir()
    staging = _make_staging(reports)
    redactor = Redactor.from_env()
    finished = datetime.now(timezone.utc)
    try:
        for item in ("raw", "charts"):
            if (run_dir / item).is_dir():
                shutil.copytree(run_dir / item, staging / item)
        for item in ("findings.json", "timeline.jsonl"):
            if (run_dir / item).is_file():
                shutil.copy2(run_dir / item, staging / item)
        nb_out = staging / f"{runbook}.ipynb"
        source = get_runbook(runbook).path
        saved = notebook is not None and notebook.is_file()
        if saved:
            shutil.copy2(notebook, nb_out)
        finalize_notebook(nb_out, staging / f"{runbook}.html", redactor, fallback_source=source)
        findings = _read_json(staging / "findings.json") or {}
        findings.update(status="ok" if findings.get("complete") else "incomplete",
                        interactive=True, started_at=iso(started), finished_at=iso(finished),
                        exit_code=EXIT_OK)
        atomic_write_json(staging / "findings.json", redactor.obj(findings))
        safe = redactor.obj(parameters)
        atomic_write_json(staging / "parameters.json", {
            "runbook": runbook, "target": findings.get("target", ""), "parameters": safe,
            "given": safe})
        atomic_write_text(staging / "run.log", redactor.text(
            f"{iso(finished)} opslib {__version__}: interactive run of {runbook} packed from "
            f"{run_dir}\nnotebook: " + (f"as saved at {notebook}" if saved else
                                          "not found (save it in JupyterLab, or set "
                                          "OPSLIB_NOTEBOOK): the stored runbook stands in")
            + "\n"))
        _scrub(staging, redactor)
        with _incident_lock(reports / incident):
            write_manifest(staging, redactor.obj({
                "runbook": runbook, "target": findings.get("target", ""),
                "app": findings.get("app", ""), "incident": incident, "parameters": safe,
                "operator": _operator(), "tool_version": __version__, "git_commit": _git_commit(),
                "python_version": platform.python_version(), "papermill_version": "",
                "started_at": iso(started), "finished_at": iso(finished),
                "status": findings["status"], "exit_code": EXIT_OK, "interactive": True}),
                incident_dir=reports / incident)
            return _publish(staging, reports / incident, started, runbook)
    except BaseException:
        _drop(staging)
        raise


def derive_status(result: dict, *, killed: bool, returncode: int | None,
                  findings: dict | None) -> tuple[str, dict]:
    """The run's status from what actually happened, not from papermill's cell metadata."""
    error = {k: result[k] for k in ("ename", "evalue", "cell_index") if k in result}
    if killed:
        return "timeout", error or {"ename": "Deadline", "evalue": "run passed its deadline"}
    outcome = result.get("outcome")
    if outcome in ("failed", "timeout", "kernel_died"):
        return outcome, error
    if outcome != "ok":
        return "failed", error or {"ename": "ExecutorDied",
                                   "evalue": f"execution process exited with {returncode}"}
    if not findings or not findings.get("complete") or result.get("stopped_early"):
        return "incomplete", {"ename": "Incomplete",
                              "evalue": "the notebook stopped before run.finish() "
                                        "(sys.exit or an early return)"}
    return "ok", {}


def outcome_exit_code(status: str, severity: str, fail_on: str, apply_outcome: str = "", *,
                      allow_unknown: bool = False) -> int:
    """0, 1 or 3 (see the module docstring): ``unknown`` fails like ``fail_on`` itself."""
    if status != "ok" or apply_outcome in ("refused", "failed"):
        return EXIT_FAILED
    if fail_on == "never":
        return EXIT_OK
    if severity == "unknown" and not allow_unknown:
        return EXIT_SEVERITY
    if severity in ("warning", "critical") and rank(severity) >= rank(fail_on):
        return EXIT_SEVERITY
    return EXIT_OK


def _final_findings(prep: Prepared, staging: Path, status: str, error: dict,
                    started: datetime, finished: datetime) -> dict[str, Any]:
    data = _read_json(staging / "findings.json") or {}
    findings = data.get("findings") or []
    severity = data.get("severity") or "unknown"
    if status != "ok":
        seen = [f.get("severity", "") for f in findings]
        worst_seen = max((s for s in seen if s in ("warning", "critical")), key=rank, default="")
        severity = worst_seen or "unknown"
    out = {
        "schema": FINDINGS_SCHEMA,
        "runbook": prep.runbook.name,
        "target": prep.target_kind,
        "scenario": data.get("scenario") or (prep.parameters.get("scenario") if prep.target_kind == "demo" else None),
        "app": data.get("app") or prep.parameters.get("app", ""),
        "incident": prep.incident,
        "status": status,
        "severity": severity,
        "started_at": iso(started),
        "finished_at": iso(finished),
        "findings": findings,
        "escalation": _escalation(data.get("escalation"), status),
        "actions": data.get("actions") or [],
    }
    if prep.replay is not None:
        out["replay"] = prep.replay
    for key in ("app_url", "version", "reference_time", "plan_digest", "apply", "coverage"):
        if data.get(key) is not None:
            out[key] = data[key]
    if error:
        out["error"] = error
    return out


def _notify(staging: Path, findings: dict[str, Any], redactor: Redactor, final: Path,
            reports: Path) -> None:
    """Tell the configured routes (Slack, PagerDuty; see :mod:`opslib.notify`) where the
    evidence will be, and keep the outcomes — without URLs or keys — in the evidence."""
    from . import notify
    from .review.scan import SITE_DIR

    level = int((findings.get("escalation") or {}).get("level") or 0)
    if not notify.routes(level):
        return
    review = reports / SITE_DIR / final.parent.name / "runs" / f"{final.name}.html"
    outcomes = notify.notify(findings, str(final), f"{review} (make review builds it)")
    findings["notifications"] = outcomes
    atomic_write_json(staging / "findings.json", redactor.obj(findings))


def _escalation(recorded: dict | None, status: str) -> dict[str, Any]:
    """The run's escalation: what the notebook recorded, but a run that did not finish is at
    least level 1 — its partial findings cannot say "no action needed"."""
    if status == "ok" and recorded:
        return recorded
    why = f"the runbook did not finish ({status}): diagnose by hand"
    level = int((recorded or {}).get("level") or 0)
    if level >= 2:
        return {**recorded, "reason": f"{recorded.get('reason')}; {why}"}
    return {"level": 1, "team": "On-Call Engineer", "reason": why}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _incident_lock(incident_dir: Path) -> Iterator[None]:
    """One run at a time chains itself to the incident (parallel triage runs included)."""
    import fcntl

    incident_dir.mkdir(parents=True, exist_ok=True)
    with open(incident_dir / ".chain.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _publish(staging: Path, incident_dir: Path, started: datetime, runbook: str) -> Path:
    """Move the packed staging folder to its final name with one atomic rename."""
    staging.with_name(staging.name + ".pid").unlink(missing_ok=True)
    incident_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(staging, 0o755)
    for _ in range(1000):
        final = _free_name(incident_dir, started, runbook)
        try:
            os.rename(staging, final)
            return final
        except OSError:
            if not final.exists():
                raise
    raise UsageError(f"too many runs named {final.name} in {incident_dir}")


def _free_name(incident_dir: Path, started: datetime, runbook: str) -> Path:
    """Where a run published now goes: ``<UTC time>-<runbook>``, ``…-2`` if taken."""
    base = f"{started:%Y%m%dT%H%M%SZ}-{runbook}"
    for n in range(1, 1000):
        final = incident_dir / (base if n == 1 else f"{base}-{n}")
        if not final.exists():
            return final
    raise UsageError(f"too many runs named {base} in {incident_dir}")


# --------------------------------------------------------------------------- redaction
def finalize_notebook(nb_path: Path, html_path: Path, redactor: Redactor,
                      fallback_source: Path | None = None) -> None:
    """Redact the executed notebook in place and export it to HTML.

    If the execution never wrote a notebook (e.g. the kernel could not start), the source
    notebook stands in so the evidence still shows what was to run.
    """
    import nbformat

    if nb_path.exists():
        try:
            nb = nbformat.read(str(nb_path), as_version=4)
        except Exception:  # a truncated save: keep the evidence readable
            nb = nbformat.read(str(fallback_source), as_version=4) if fallback_source else None
    elif fallback_source is not None:
        nb = nbformat.read(str(fallback_source), as_version=4)
    else:
        return
    if nb is None:
        return
    pm = nb.metadata.get("papermill")
    if isinstance(pm, dict):
        pm.pop("input_path", None)
        pm.pop("output_path", None)
    nb = nbformat.from_dict(redactor.obj(nb))
    atomic_write_text(nb_path, nbformat.writes(nb))
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    atomic_write_text(html_path, redactor.text(no_script(body)))


def no_script(html: str) -> str:
    """The exported notebook with the review site's Content-Security-Policy (no script at
    all): evidence opened in a browser never runs what a remote answer put into it. The
    notebook renders as static HTML (nbconvert rendered its Markdown already)."""
    from .review.html import CSP

    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    head = re.search(r"<head[^>]*>", html, re.I)
    if head is None:
        return meta + html
    return html[:head.end()] + meta + html[head.end():]


def _scrub(root: Path, redactor: Redactor) -> None:
    """Last line of defence: re-redact any text file still holding a secret literal."""
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix == ".png":
            continue
        data = path.read_bytes()
        if redactor.contains_secret(data):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            atomic_write_bytes(path, redactor.text(text).encode("utf-8"))


# --------------------------------------------------------------------------- summary
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def plain(text: Any) -> str:
    """Outside text for a terminal: control characters (ANSI escapes that recolour, move the
    cursor or rewrite the title, carriage returns that hide a line) shown as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def summary_text(outcome: RunOutcome, reports_root: Path | None = None) -> str:
    f = outcome.findings
    where = outcome.path
    try:
        where = outcome.path.relative_to(Path.cwd())
    except ValueError:
        pass
    head = f"{f['runbook']} · {f['target']}"
    if f.get("scenario"):
        head += f" (scenario {f['scenario']})"
    head += f" · app {f.get('app') or '-'} · incident {f['incident']}"
    lines = [head,
             f"status: {outcome.status}   severity: {outcome.severity.upper()}   "
             f"exit: {outcome.exit_code}"]
    if (f.get("replay") or {}).get("verified") is False:
        lines.append(f"WARNING: replayed from evidence that does not verify: "
                     f"{plain(f['replay']['source'])}")
    if f.get("error"):
        e = f["error"]
        cell = f" in cell {e['cell_index']}" if "cell_index" in e else ""
        lines.append(f"error: {plain(e.get('ename'))}{cell}: {plain(str(e.get('evalue', ''))[:200])}")
    esc = f.get("escalation") or {}
    lines.append(f"escalation: level {esc.get('level')} ({esc.get('team')}) — "
                 f"{plain(esc.get('reason'))}")
    top = [x for x in f.get("findings", []) if x.get("severity") not in ("info",)][:6]
    if top:
        lines.append("findings:")
        lines += [f"  {x['severity'].upper():<9} {plain(x['title'])}" for x in top]
    actions = f.get("actions") or []
    if actions:
        lines.append(f"actions: {len(actions)} " + ", ".join(sorted({a.get('status', 'planned') for a in actions})))
        lines += [f"  {a.get('status', 'planned'):<8} {plain(a.get('command') or a.get('title'))}"
                  for a in actions[:6]]
        if f.get("plan_digest"):
            lines.append(f"  plan digest {f['plan_digest']} (apply: make run issue={f['runbook']} … "
                         f"apply=true confirm={f['plan_digest']})")
    applied = f.get("apply") or {}
    if applied.get("outcome") == "refused":
        lines.append(f"apply refused: {plain(applied.get('reason') or 'see findings.json')}")
    lines.append(f"evidence: {where}/  (verify: make verify path={where})")
    return "\n".join(lines)


def run(req: RunRequest) -> RunOutcome:
    return execute(prepare(req))


def install_sigterm_handler() -> None:
    """Turn SIGTERM (CI cancelling the job) into KeyboardInterrupt, so the kernel is killed."""
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)


__all__ = ["RunRequest", "RunOutcome", "prepare", "execute", "run", "summary_text",
           "derive_status", "outcome_exit_code", "finalize_notebook", "MANIFEST"]
