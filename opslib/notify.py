"""Telling people: a Slack incoming webhook and PagerDuty Events API v2, per escalation level.

Configured from the environment (all optional; these are secrets and never reach evidence):

* ``SLACK_WEBHOOK_URL`` — a Slack incoming webhook: severity, escalation level and team, the
  top findings, the one next step, the evidence path and its review page.
* ``PAGERDUTY_ROUTING_KEY`` (``PAGERDUTY_EVENTS_URL`` overrides
  ``https://events.pagerduty.com``) — Events API v2: ``trigger`` for a run at warning or worse
  (or ``unknown``), with ``dedup_key`` ``opslib-<incident>`` (one incident in PagerDuty per
  incident here); ``resolve`` when the alert resolves (:func:`resolve`) and when a run of the
  incident is green.
* ``OPS_ESCALATION_L2_SLACK_WEBHOOK_URL`` / ``OPS_ESCALATION_L2_PAGERDUTY_ROUTING_KEY`` and
  the same with ``L3``: the routes of the seed's Level 2 (Platform Team) and Level 3 (Security
  Team). A run at that level notifies its route too — a security suspicion reaches Level 3 at
  once.

Delivery never fails a run: each message gets at most three tries (back-off on 429 and 5xx,
``Retry-After`` honoured up to 5 s, 5 s timeout each), and its outcome — without the URL or
key — is returned for the evidence.
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping

import httpx

PAGERDUTY_URL = "https://events.pagerduty.com"
TRIES, TIMEOUT_S, MAX_WAIT_S = 3, 5.0, 5.0
PD_SEVERITY = {"critical": "critical", "unknown": "error", "warning": "warning"}


def routes(level: int, environ: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """``(kind, route name, url or key)`` for a run at escalation ``level``."""
    env = os.environ if environ is None else environ
    out = []
    for name, prefix in (("default", ""), ("level 2", "OPS_ESCALATION_L2_"),
                         ("level 3", "OPS_ESCALATION_L3_")):
        if prefix and level < int(name[-1]):
            continue
        if env.get(prefix + "SLACK_WEBHOOK_URL"):
            out.append(("slack", name, env[prefix + "SLACK_WEBHOOK_URL"]))
        if env.get(prefix + "PAGERDUTY_ROUTING_KEY"):
            out.append(("pagerduty", name, env[prefix + "PAGERDUTY_ROUTING_KEY"]))
    return out


def dedup_key(incident: str) -> str:
    return f"opslib-{incident}"


def _next_step(findings: dict[str, Any]) -> str:
    planned = [a for a in findings.get("actions") or [] if a.get("status") == "planned"]
    if planned:
        return f"{planned[0].get('title')}: `{planned[0].get('command')}`"
    handed = next((f for f in findings.get("findings") or []
                   if f.get("runbook") and f["runbook"] != findings.get("runbook")), None)
    if handed:  # what the logs say is the cause, for the runbook that handles it
        return f"run the {handed['runbook']} runbook ({handed.get('title')})"
    esc = findings.get("escalation") or {}
    return str(esc.get("reason") or "read the evidence")


def _top(findings: dict[str, Any], n: int = 3) -> list[dict[str, Any]]:
    return [f for f in findings.get("findings") or [] if f.get("severity") not in ("info", "ok")][:n]


def slack_message(findings: dict[str, Any], evidence: str, review: str) -> dict[str, Any]:
    esc = findings.get("escalation") or {}
    head = (f"*{str(findings.get('severity', '?')).upper()}* {findings.get('runbook')} on "
            f"{findings.get('app') or '?'} — escalation level {esc.get('level')} "
            f"({esc.get('team')})")
    lines = [head] + [f"• {f.get('severity', '').upper()}: {f.get('title')}" for f in _top(findings)]
    lines += [f"Next step: {_next_step(findings)}", f"Evidence: `{evidence}`",
              f"Review: `{review}`"]
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def pagerduty_event(key: str, findings: dict[str, Any], evidence: str) -> dict[str, Any]:
    severity = str(findings.get("severity") or "unknown")
    top = _top(findings, 1)
    summary = (f"{severity.upper()} {findings.get('runbook')} on {findings.get('app')}: "
               + (top[0].get("title") if top else "see the evidence"))[:1024]
    return {"routing_key": key, "event_action": "trigger",
            "dedup_key": dedup_key(str(findings.get("incident"))),
            "payload": {"summary": summary, "source": str(findings.get("app") or "opslib"),
                        "severity": PD_SEVERITY.get(severity, "info"),
                        "component": str(findings.get("runbook")),
                        "custom_details": {"escalation": findings.get("escalation"),
                                           "next_step": _next_step(findings),
                                           "evidence": evidence}}}


def _send(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST with bounded retries; the outcome, never an exception."""
    last = ""
    for attempt in range(1, TRIES + 1):
        try:
            r = httpx.post(url, json=body, timeout=TIMEOUT_S, follow_redirects=False)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
            wait = 0.5 * attempt
        else:
            if r.status_code < 300:
                return {"outcome": "delivered", "status": r.status_code, "attempts": attempt}
            last = f"HTTP {r.status_code}"
            if r.status_code != 429 and r.status_code < 500:
                return {"outcome": "refused", "status": r.status_code, "attempts": attempt,
                        "detail": r.text[:200]}
            try:
                wait = min(float(r.headers.get("retry-after", 0.5 * attempt)), MAX_WAIT_S)
            except ValueError:
                wait = 0.5 * attempt
        if attempt < TRIES:
            time.sleep(wait)
    return {"outcome": "failed", "attempts": TRIES, "detail": last}


def notify(findings: dict[str, Any], evidence: str, review: str,
           environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Tell every configured route of the run's level; the outcomes (no URLs, no keys)."""
    env = os.environ if environ is None else environ
    level = int((findings.get("escalation") or {}).get("level") or 0)
    severity = str(findings.get("severity") or "")
    out = []
    for kind, route, secret in routes(level, env):
        if kind == "slack":
            result = _send(secret, slack_message(findings, evidence, review))
        elif severity in PD_SEVERITY:  # PagerDuty pages only for something to act on
            base = (env.get("PAGERDUTY_EVENTS_URL") or PAGERDUTY_URL).rstrip("/")
            result = _send(f"{base}/v2/enqueue", pagerduty_event(secret, findings, evidence))
        elif severity == "ok":  # the runbook is green: the incident's page, if any, resolves
            base = (env.get("PAGERDUTY_EVENTS_URL") or PAGERDUTY_URL).rstrip("/")
            result = {"event_action": "resolve", **_send(f"{base}/v2/enqueue", {
                "routing_key": secret, "event_action": "resolve",
                "dedup_key": dedup_key(str(findings.get("incident")))})}
        else:
            result = {"outcome": "not sent", "detail": f"severity {severity}: nothing to page"}
        out.append({"channel": kind, "route": route, **result})
    return out


def resolve(incident: str, environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """PagerDuty ``resolve`` for the incident's ``dedup_key`` on every PagerDuty route."""
    env = os.environ if environ is None else environ
    base = (env.get("PAGERDUTY_EVENTS_URL") or PAGERDUTY_URL).rstrip("/")
    return [{"channel": kind, "route": route, "event_action": "resolve",
             **_send(f"{base}/v2/enqueue", {"routing_key": key, "event_action": "resolve",
                                            "dedup_key": dedup_key(incident)})}
            for kind, route, key in routes(3, env) if kind == "pagerduty"]
