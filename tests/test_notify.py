"""Notifications at the end of a run, to STAND-INS of Slack's incoming webhooks and
PagerDuty's Events API v2 (events.pagerduty.com/v2/enqueue): strict about what the real
services require, and recording every request."""
from __future__ import annotations

import json

from tests.conftest import clean_env, only_run
from tests.inprocess import opslib_run
from tests.servers import LocalHTTPServer, Reply

SLACK_PATH = "/services/T000/B000/CanaryHookSecret123"
ROUTING_KEY = "R0UTINGKEYCANARY0123456789abcdef"


class PagerDutyStandIn(LocalHTTPServer):
    """POST /v2/enqueue: routing_key (32 chars), event_action, dedup_key; a trigger needs
    payload.summary, source and a severity of critical|error|warning|info. 202 with
    {"status": "success", "dedup_key"}; 400 {"status": "invalid event"} otherwise."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        super().__init__(self._handle)

    def _handle(self, req):
        if self.fail_first:
            self.fail_first -= 1
            return Reply(429, {"status": "throttle event"}, headers={"retry-after": "0"})
        try:
            ev = json.loads(req.body)
        except ValueError:
            return Reply(400, {"status": "invalid event", "message": "Event object is invalid"})
        p = ev.get("payload") or {}
        ok = (req.path == "/v2/enqueue" and len(ev.get("routing_key", "")) == 32
              and ev.get("event_action") in ("trigger", "acknowledge", "resolve")
              and (ev["event_action"] != "trigger" or (
                  p.get("summary") and p.get("source")
                  and p.get("severity") in ("critical", "error", "warning", "info"))))
        if not ok:
            return Reply(400, {"status": "invalid event", "message": "Event object is invalid"})
        return Reply(202, {"status": "success", "message": "Event processed",
                           "dedup_key": ev.get("dedup_key")})


def slack_stand_in(statuses: list[int] | None = None) -> LocalHTTPServer:
    """An incoming webhook: POST JSON with "text" to the hook's path; "ok", or Slack's errors."""
    queue = list(statuses or [])

    def handle(req):
        if queue:
            return Reply(queue.pop(0), "rate_limited")
        if req.path != SLACK_PATH:
            return Reply(404, "no_service")
        try:
            body = json.loads(req.body)
        except ValueError:
            return Reply(400, "invalid_payload")
        return Reply(200, "ok") if body.get("text") else Reply(400, "no_text")

    return LocalHTTPServer(handle)


def test_a_critical_run_tells_slack_and_pages_with_a_stable_dedup_key(reports):
    with slack_stand_in([500]) as slack, PagerDutyStandIn(fail_first=1) as pd:
        env = clean_env(OPSLIB_REPORTS=str(reports), SLACK_WEBHOOK_URL=slack.url + SLACK_PATH,
                        PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pd.url)
        proc = opslib_run("run", "health", "--scenario", "degraded", "--incident", "inc-n",
                          env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        messages = [json.loads(r.body) for r in slack.requests if r.path == SLACK_PATH]
        events = [json.loads(r.body) for r in pd.requests]
    text = messages[-1]["text"]
    assert "CRITICAL" in text and "escalation level" in text and str(run) in text
    assert "Next step:" in text and "_review/inc-n/runs/" in text
    trigger = events[-1]
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "opslib-inc-n"
    assert trigger["payload"]["severity"] == "critical"
    f = json.loads((run / "findings.json").read_text())
    outcomes = {n["channel"]: n for n in f["notifications"]}
    assert outcomes["slack"]["outcome"] == "delivered" and outcomes["slack"]["attempts"] == 2
    assert outcomes["pagerduty"]["outcome"] == "delivered" and outcomes["pagerduty"]["attempts"] == 2
    everything = b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file())
    assert b"CanaryHookSecret123" not in everything and ROUTING_KEY.encode() not in everything
    from opslib.evidence import verify_run
    assert verify_run(run).ok  # the outcomes are part of the verified evidence


def test_delivery_that_keeps_failing_never_fails_the_run(reports):
    with slack_stand_in([503, 503, 503]) as slack:
        env = clean_env(OPSLIB_REPORTS=str(reports), SLACK_WEBHOOK_URL=slack.url + SLACK_PATH)
        proc = opslib_run("run", "health", "--scenario", "degraded", env=env)
    assert proc.returncode == 0
    f = json.loads((only_run(reports) / "findings.json").read_text())
    assert f["notifications"] == [{"channel": "slack", "route": "default", "outcome": "failed",
                                   "attempts": 3, "detail": "HTTP 503"}]


def test_level_routes_and_no_page_for_a_green_run(reports, tmp_path):
    from opslib import notify

    env = {"SLACK_WEBHOOK_URL": "https://hooks/x", "OPS_ESCALATION_L2_SLACK_WEBHOOK_URL": "https://hooks/l2",
           "OPS_ESCALATION_L3_PAGERDUTY_ROUTING_KEY": ROUTING_KEY}
    assert [r[1] for r in notify.routes(1, env)] == ["default"]
    assert [r[1] for r in notify.routes(2, env)] == ["default", "level 2"]
    assert [r[1] for r in notify.routes(3, env)] == ["default", "level 2", "level 3"]
    with PagerDutyStandIn() as pd:
        green = {"severity": "ok", "escalation": {"level": 3}, "incident": "i", "app": "a",
                 "runbook": "health", "findings": []}
        # a green run pages no one: it resolves the incident's page, if one is open
        out = notify.notify(green, "e", "r", {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
                                              "PAGERDUTY_EVENTS_URL": pd.url})
        assert out[0]["event_action"] == "resolve" and out[0]["outcome"] == "delivered"
        resolved = notify.resolve("i", {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
                                        "PAGERDUTY_EVENTS_URL": pd.url})
        assert resolved[0]["outcome"] == "delivered"
        assert [json.loads(r.body) for r in pd.requests] == [
            {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "opslib-i"}] * 2
        # nothing to act on and not green (an info-only run): nothing is sent
        out = notify.notify({**green, "severity": "info"}, "e", "r",
                            {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_EVENTS_URL": pd.url})
        assert out[0]["outcome"] == "not sent" and len(pd.requests) == 2
