"""Runs triggered by alerts: an HTTP receiver for Alertmanager's webhook (payload version 4).

``python -m opslib serve [--listen 127.0.0.1:9095]`` (``make serve``):

* ``POST /alertmanager`` — needs ``Authorization: Bearer $OPSLIB_WEBHOOK_TOKEN``. The body is
  Alertmanager's webhook payload; each *firing* alert's runbooks come from the mapping file
  (``--runbook-map``: alert name → runbooks) or else its ``runbook`` annotation or label (as
  :mod:`opslib.alerts` writes them), and its app from label ``app`` (``app_url`` optional). Everything is checked before anything is accepted: a body over 1 MiB
  is 413, invalid JSON, another payload version, an unknown runbook or a bad app name is 400
  naming the problem, and nothing runs. Otherwise 202 at once, with the ids accepted.
* One incident per alert group (``groupKey``): its runs share
  ``reports/alert-<digest of the group key>/``. A runbook for a group already queued or
  running, or done within the cool-down, is recorded as ``deduplicated``, not run again;
  ``resolved`` alerts are recorded, not run. Runs are read-only (never ``apply``).
* Bounded: ``workers`` runs at once (default: cores), at most ``max_queue`` waiting (503
  beyond). What was accepted is kept in ``reports/_serve/state.json`` (written atomically on
  every change): a restart runs what was still queued, and marks what was running when it
  stopped ``interrupted`` instead of running it twice. Stopped (SIGTERM, Ctrl-C), ``serve``
  ends the runs in progress (their papermill and kernel) and records them ``interrupted``.
* ``GET /healthz`` (liveness and queue depth) and ``GET /runs`` (every job: runbook, app,
  incident, status, evidence path).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from .catalog import runbooks
from .config import check_app
from .errors import OpsError, UsageError, WebhookRejected
from .evidence import atomic_write_json

TOKEN_ENV = "OPSLIB_WEBHOOK_TOKEN"
MAX_BODY = 1024 * 1024
ACTIVE = ("queued", "running")


@dataclass
class Job:
    id: str
    group: str
    incident: str
    runbook: str
    app: str
    app_url: str = ""
    alertname: str = ""
    instance: str = ""  # the alert's `instance` label (a Fly machine id), for the operator
    status: str = "queued"  # queued | running | done | failed | deduplicated | resolved | interrupted
    accepted_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    evidence: str = ""
    severity: str = ""
    error: str = ""
    notifications: list = field(default_factory=list)  # outcomes, never URLs or keys


def incident_for(group: str) -> str:
    return "alert-" + hashlib.sha256(group.encode()).hexdigest()[:12]


class Receiver:
    """The queue, its persistence and its workers (the HTTP layer is :func:`make_server`)."""

    def __init__(self, reports: Path, *, token: str, workers: int | None = None,
                 max_queue: int = 100, cooldown_s: float = 300.0,
                 run: Callable[[Job], dict[str, Any]] | None = None,
                 state_dir: Path | None = None,
                 runbook_map: dict[str, list[str]] | None = None) -> None:
        if not token:
            raise UsageError(f"${TOKEN_ENV} is not set: the receiver accepts no alert without it",
                             hint="export OPSLIB_WEBHOOK_TOKEN=<a long random string> and give "
                                  "the same to Alertmanager's http_config.authorization")
        self.reports, self.token = reports, token
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.max_queue, self.cooldown_s = max_queue, cooldown_s
        self.run = run or run_job
        self.runbook_map = runbook_map or {}
        self.state_path = (state_dir or reports / "_serve") / "state.json"
        self.lock = threading.Condition()
        self.jobs: list[Job] = self._load()
        self._stop = False
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"serve-{i}")
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ state
    def _load(self) -> list[Job]:
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise UsageError(f"{self.state_path} is unreadable ({exc})",
                             hint="move it aside to start with an empty queue") from None
        jobs = [Job(**j) for j in raw.get("jobs", [])]
        for j in jobs:
            if j.status == "running":  # stopped mid-run: never run twice
                j.status, j.error = "interrupted", "the receiver stopped during this run"
        return jobs

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.state_path, {"schema": 1, "jobs": [asdict(j) for j in self.jobs]})

    # ------------------------------------------------------------------ intake
    def check_token(self, header: str | None) -> None:
        given = (header or "").removeprefix("Bearer ").strip() if (header or "").startswith(
            "Bearer ") else ""
        if not given or not hmac.compare_digest(given, self.token):
            raise WebhookRejected("missing or wrong bearer token (Authorization: Bearer …)", status=401)

    def accept(self, payload: Any) -> list[Job]:
        """Check the whole payload, then queue its firing alerts; nothing on any error."""
        if not isinstance(payload, dict):
            raise WebhookRejected("the body is not a JSON object", status=400)
        if str(payload.get("version")) != "4":
            raise WebhookRejected(f"payload version {payload.get('version')!r} is not "
                                  "Alertmanager's webhook version 4", status=400)
        group = str(payload.get("groupKey") or "")
        alerts = payload.get("alerts")
        if not group or not isinstance(alerts, list):
            raise WebhookRejected("an Alertmanager payload has groupKey and alerts", status=400)
        known = set(runbooks())
        planned = []
        for n, alert in enumerate(alerts):
            labels = alert.get("labels") or {} if isinstance(alert, dict) else None
            if not isinstance(labels, dict):
                raise WebhookRejected(f"alert {n} is not an object with labels", status=400)
            notes = alert.get("annotations") or {}
            alertname = str(labels.get("alertname") or "")
            # the mapping file first (several runbooks per alert), else the rule's annotation
            names = self.runbook_map.get(alertname) or [
                str(notes.get("runbook") or labels.get("runbook") or "")]
            for runbook in names:
                if runbook not in known:
                    raise WebhookRejected(f"alert {n} ({alertname or '?'}) names runbook "
                                          f"{runbook!r}, which is not one of {', '.join(sorted(known))}", status=400)
            app = str(labels.get("app") or "")
            try:
                check_app(app)
            except UsageError as exc:
                raise WebhookRejected(f"alert {n}: {exc}", status=400) from None
            if not app:
                raise WebhookRejected(f"alert {n} has no app label", status=400)
            planned += [Job(uuid.uuid4().hex[:12], group, incident_for(group), runbook, app,
                            str(labels.get("app_url") or ""), alertname,
                            str(labels.get("instance") or "")[:64],
                            status="resolved" if alert.get("status") == "resolved" else "queued")
                        for runbook in names]
        with self.lock:
            queued = [j for j in planned if j.status == "queued"]
            waiting = sum(j.status == "queued" for j in self.jobs)
            if waiting + len(queued) > self.max_queue:
                raise WebhookRejected(f"the queue is full ({waiting} waiting, limit "
                                      f"{self.max_queue}): Alertmanager will retry", status=503)
            for j in planned:  # one at a time: two alerts of one payload run a runbook once
                if j.status == "queued" and self._duplicate(j):
                    j.status = "deduplicated"
                self.jobs.append(j)
            self._save()
            self.lock.notify_all()
        for j in planned:
            if j.status == "resolved":  # the page, if any, is resolved; nothing is run
                threading.Thread(target=self._resolve, args=(j,), daemon=True).start()
        return planned

    def _resolve(self, job: Job) -> None:
        from .notify import resolve

        outcomes = resolve(job.incident)
        with self.lock:
            job.notifications = outcomes
            self._save()

    def _duplicate(self, job: Job) -> bool:
        now = time.time()
        return any(j.group == job.group and j.runbook == job.runbook and j.app == job.app and
                   (j.status in ACTIVE or (j.status in ("done", "failed") and j.finished_at
                                           and now - j.finished_at < self.cooldown_s))
                   for j in self.jobs)

    # ------------------------------------------------------------------ work
    def _work(self) -> None:
        while True:
            with self.lock:
                while not self._stop and not any(j.status == "queued" for j in self.jobs):
                    self.lock.wait()
                if self._stop:
                    return
                job = next(j for j in self.jobs if j.status == "queued")
                job.status = "running"
                self._save()
            try:
                result = self.run(job)
                done = {"status": "done", "evidence": result.get("evidence", ""),
                        "severity": result.get("severity", "")}
            except (OpsError, OSError) as exc:
                done = {"status": "failed", "error": str(exc)}
            with self.lock:
                if job.status != "interrupted":  # stop() has already said what became of it
                    for k, v in done.items():
                        setattr(job, k, v)
                job.finished_at = time.time()
                self._save()
                self.lock.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True when nothing is queued or running (tests, orderly shutdown)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while any(j.status in ACTIVE for j in self.jobs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True

    def stop(self, *, kill_runs: bool = False) -> None:
        """Stop taking work. With ``kill_runs`` (the ``serve`` process, whose every child is a
        run's papermill and kernel) the runs in progress are ended now and recorded
        ``interrupted`` — a restart never runs them twice, and nothing is left running."""
        with self.lock:
            self._stop = True
            running = [j for j in self.jobs if j.status == "running"] if kill_runs else []
            for j in running:
                j.status, j.error = "interrupted", "the receiver stopped during this run"
            if running:
                self._save()
            self.lock.notify_all()
        if running:
            from .runner import kill_tree

            kill_tree(os.getpid(), including=False)
        for t in self._threads:
            t.join(timeout=30)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(j) for j in self.jobs]


def load_runbook_map(path: Path) -> dict[str, list[str]]:
    """``alertname: [runbook, …]`` from a YAML or JSON file; refused (exit 2) when it is not
    that shape or names a runbook this checkout does not have."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"--runbook-map {path}: {exc}",
                         hint="a YAML mapping, e.g. OpslibErrorRateCritical: [not-responding, database]") from None
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"--runbook-map {path} is not a mapping of alert names to runbooks",
                         hint="e.g. OpslibErrorRateCritical: [not-responding, database]")
    known = set(runbooks())
    out: dict[str, list[str]] = {}
    for alert, names in raw.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
            raise UsageError(f"--runbook-map {path}: {alert!r} must name one runbook or a list of them")
        unknown = [x for x in names if x not in known]
        if unknown:
            raise UsageError(f"--runbook-map {path}: {alert!r} names {', '.join(unknown)}, not one of "
                             f"{', '.join(sorted(known))}")
        out[str(alert)] = names
    return out


def run_job(job: Job, *, target: str = "", scenario: str = "") -> dict[str, Any]:
    """The runbook for one alert, read-only, into the alert group's incident (on the live
    app; ``make demo-alert`` passes the demo target and its scenario)."""
    from .runner import RunRequest, execute, prepare

    outcome = execute(prepare(RunRequest(runbook=job.runbook, app=job.app,
                                         app_url=job.app_url, incident=job.incident,
                                         target=target, scenario=scenario)))
    return {"evidence": str(outcome.path), "severity": outcome.severity,
            "status": outcome.status}


def make_server(receiver: Receiver, listen: str) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")
    try:
        address = (host or "127.0.0.1", int(port))
    except ValueError:
        raise UsageError(f"--listen {listen!r} is not HOST:PORT", hint="e.g. 127.0.0.1:9095") from None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # the state file is the log
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                jobs = receiver.snapshot()
                return self._reply(200, {"ok": True, "queued": sum(j["status"] == "queued" for j in jobs),
                                         "running": sum(j["status"] == "running" for j in jobs)})
            if self.path == "/runs":
                return self._reply(200, {"runs": receiver.snapshot()})
            return self._reply(404, {"error": f"no {self.path}: POST /alertmanager, GET /healthz, GET /runs"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                if self.path != "/alertmanager":
                    raise WebhookRejected(f"no {self.path}: Alertmanager posts to /alertmanager", status=404)
                receiver.check_token(self.headers.get("authorization"))
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    raise WebhookRejected(f"the body is {length} bytes; the limit is {MAX_BODY}", status=413)
                try:
                    payload = json.loads(self.rfile.read(length) or b"null")
                except ValueError as exc:
                    raise WebhookRejected(f"the body is not JSON ({exc})", status=400) from None
                jobs = receiver.accept(payload)
            except WebhookRejected as exc:
                self.close_connection = True
                return self._reply(exc.status, {"error": str(exc)})
            self._reply(202, {"accepted": [{"id": j.id, "runbook": j.runbook, "app": j.app,
                                            "incident": j.incident, "status": j.status}
                                           for j in jobs]})

    return ThreadingHTTPServer(address, Handler)
