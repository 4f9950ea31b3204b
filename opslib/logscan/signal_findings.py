"""Findings from logs: the signals of a `LogReport`, phrased for the runbook that handles them."""

from __future__ import annotations

from typing import Any

from .report import SEVERITY_RANK, LogReport


def findings_from_logs(report: LogReport, *, include_ok: bool = True, evidence_lines: int = 3) -> list[dict[str, Any]]:
    """One finding per raised signal, most severe first.

    Each finding is ``{"id", "severity" (ok|warning|critical), "title", "detail",
    "evidence": [str, ...], "runbook"}``; ``id`` is ``logs.<signal id>``. With no signal at
    all, a single ``ok`` finding says how many lines were looked at.
    """
    out: list[dict[str, Any]] = []
    for s in report.signals:
        if s["severity"] == "ok" and not include_ok:
            continue
        where = _where(s)
        when = ""
        if s["first_seen"]:
            when = f" between {s['first_seen']} and {s['last_seen']}" if s["last_seen"] != s["first_seen"] else f" at {s['first_seen']}"
        detail = f"{s['title']}: {s['count']:,} occurrence{'s' if s['count'] != 1 else ''}{when}{where}."
        if s.get("meaning"):
            detail += f" Fly's error-code page: {s['meaning']}"
        if s["id"] == "http_5xx":
            detail += (f" 5xx error rate {s['error_rate']:.2%} of {report.http['responses']:,} responses"
                       " (seed thresholds: warning > 1%, critical > 5%).")
        if s["details"]:
            detail += " Breakdown: " + ", ".join(f"{k} x{v}" for k, v in s["details"].items()) + "."
        evidence = [f"{s['id']}: count={s['count']} first_seen={s['first_seen']} last_seen={s['last_seen']} "
                    f"instances={','.join(s['instances']) or '-'} regions={','.join(s['regions']) or '-'}"]
        evidence += s["examples"][:evidence_lines]
        out.append({
            "id": f"logs.{s['id']}",
            "severity": s["severity"],
            "title": _title(s),
            "detail": detail,
            "evidence": evidence,
            "runbook": s["runbook"],
        })
    if not out:
        out.append({
            "id": "logs.no_signals",
            "severity": "ok",
            "title": "No incident signals in the logs",
            "detail": (f"{report.lines_read:,} lines read ({report.parsed:,} parsed); seed grep counts: "
                       + ", ".join(f"{k} {v:,}" for k, v in report.categories.items()) + "."),
            "evidence": [f"window {report.to_dict(per_minute=False)['window']}"],
            "runbook": "logs",
        })
    out.sort(key=lambda f: SEVERITY_RANK[f["severity"]])
    return out


def _where(s: dict[str, Any]) -> str:
    inst = s["instances"]
    if not inst:
        return ""
    shown = ", ".join(inst[:3]) + (f" and {len(inst) - 3} more" if len(inst) > 3 else "")
    regions = f" ({', '.join(s['regions'][:3])})" if s["regions"] else ""
    return f" on {shown}{regions}"


def _title(s: dict[str, Any]) -> str:
    n = s["count"]
    inst = s["instances"]
    on = f" on {inst[0]}" if len(inst) == 1 else (f" on {len(inst)} machines" if inst else "")
    return f"{s['title']} ({n:,}x{on})"
