"""``make demo-alert``: the whole alert flow on a laptop, with no account.

The alert the generated rules would fire for a demo incident (``oom-loop``: memory above the
seed's critical threshold; ``connection-leak``: the error rate) is posted, exactly as
Alertmanager posts it, to a real ``serve`` receiver on 127.0.0.1 → ``serve`` runs the alert's
runbook on that incident's demo world → the evidence is packed and verified → Slack and
PagerDuty are told — here a local receiver on 127.0.0.1 that prints what it got, so nothing
leaves the machine whatever the environment says — and the incident's next step is printed.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from ..errors import UsageError
from .world import APP

# the incident → the alert its world makes the generated rules fire
ALERT_FOR = {"oom-loop": "OpslibMemoryUsageCritical",
             "connection-leak": "OpslibErrorRateCritical"}
# every variable that could send the demo's messages somewhere real
_ROUTES = ("SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "PAGERDUTY_EVENTS_URL")


class _Inbox:
    """Slack's and PagerDuty's side, on 127.0.0.1: answers as they do, keeps what it got."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    inbox.received.append((self.path, json.loads(body)))
                except ValueError:
                    inbox.received.append((self.path, {}))
                slack = self.path.startswith("/slack")
                reply = b"ok" if slack else json.dumps({"status": "success"}).encode()
                self.send_response(200 if slack else 202)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def _local_routes(inbox: _Inbox) -> Iterator[None]:
    """Notifications go to the inbox only: every configured route is set aside meanwhile."""
    saved = {k: v for k, v in os.environ.items()
             if k in _ROUTES or k.startswith(("OPS_ESCALATION_L2_", "OPS_ESCALATION_L3_"))}
    for k in saved:
        del os.environ[k]
    os.environ.update(SLACK_WEBHOOK_URL=f"{inbox.url}/slack/demo",
                      PAGERDUTY_ROUTING_KEY="demo" * 8, PAGERDUTY_EVENTS_URL=f"{inbox.url}/pagerduty")
    try:
        yield
    finally:
        for k in _ROUTES:
            os.environ.pop(k, None)
        os.environ.update(saved)


def demo_alert(scenario: str, reports: Path, *, say: Callable[[str], None] = print,
               timeout_s: float = 600.0) -> int:
    """Run the flow; 0 when the alert's run finished and was delivered, 1 otherwise."""
    from ..alerts import rules, webhook_payload
    from ..evidence import verify_run
    from ..review.scan import load_run, run_dirs
    from ..review.triage import next_step
    from ..serve import Receiver, make_server, run_job

    if scenario not in ALERT_FOR:
        raise UsageError(f"no demo incident {scenario!r}",
                         hint=f"make demo-alert scenario={' | '.join(sorted(ALERT_FOR))}")
    rule = next(r for r in rules(APP)["groups"][0]["rules"] if r["alert"] == ALERT_FOR[scenario])
    say(f"1. Prometheus fires {rule['alert']} for {APP} (rule from `make alerts app={APP}`):")
    say(f"     {rule['expr']}   for {rule['for']}")
    inbox = _Inbox()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="opslib-demo-serve-") as state, _local_routes(inbox):
        receiver = Receiver(reports, token=token, workers=1, state_dir=Path(state),
                            run=lambda job: run_job(job, target="demo", scenario=scenario))
        server = make_server(receiver, "127.0.0.1:0")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            # one incident per demo incident: grouped by alert as well as app
            payload = webhook_payload(rule, starts_at=datetime.now(timezone.utc).isoformat(),
                                      group_by=("alertname", "app"))
            r = httpx.post(f"{url}/alertmanager", json=payload, timeout=10,
                           headers={"authorization": f"Bearer {token}"})
            accepted = r.json().get("accepted", [])
            say(f"2. Alertmanager posts it to serve ({url}/alertmanager): HTTP {r.status_code}, "
                + ", ".join(f"{a['runbook']} {a['status']}" for a in accepted))
            if r.status_code != 202:
                return 1
            finished = receiver.wait_idle(timeout_s)
            jobs = receiver.snapshot()
        finally:
            server.shutdown()
            server.server_close()
            receiver.stop()
    inbox.close()
    say("3. serve ran the alert's runbook on the demo world (read-only):")
    ok = finished
    for job in jobs:
        say(f"     {job['runbook']:<15} {job['status']:<13} {job['severity'].upper() or '-':<9} "
            f"{job['evidence'] or job['error']}")
        ok = ok and job["status"] == "done"
    incident = reports / jobs[0]["incident"] if jobs else None
    if not ok or incident is None:
        say("   the run did not finish: see the lines above")
        return 1
    for job in jobs:
        result = verify_run(Path(job["evidence"]))
        say(f"4. evidence: {job['evidence']}  (verify: {'OK' if result.ok else 'FAILED'}; "
            f"make verify path={job['evidence']})")
        ok = ok and result.ok
    say(f"5. notifications (a local inbox stands in for Slack and PagerDuty: {len(inbox.received)}"
        " received)")
    for path, body in inbox.received:
        if path.startswith("/slack"):
            say("     Slack: " + body.get("text", "").replace("\n", "\n            "))
        else:
            say(f"     PagerDuty: {body.get('event_action')} {body.get('dedup_key')}: "
                f"{(body.get('payload') or {}).get('summary', '')}")
    step = next_step([load_run(d, reports) for d in run_dirs(incident)])
    say(f"next step: {step.text}")
    say(f"the whole incident: make triage scenario={scenario}  (every read-only runbook, same world)")
    return 0 if ok and inbox.received else 1
