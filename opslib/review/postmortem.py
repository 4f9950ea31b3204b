"""A postmortem draft per incident, in the shape SRE teams use, pre-filled from the evidence.

Sections: summary, impact, timeline, findings and the evidence behind them, actions taken,
escalations, open questions. Nothing is invented: every bullet and row ends with a relative
link to the file it was read from (``findings.json``, ``timeline.jsonl``, the manifest…), and
where the evidence is silent the draft says so instead of guessing.

The draft is written as Markdown (``postmortem.md``, to paste into the team's document) and as
HTML (``postmortem.html``, same content, for the browser) beside the incident's pages.
"""
from __future__ import annotations

from .compare import metrics_of
from .doc import Doc, Line
from .html import rel
from .scan import MANIFEST, RunSummary, badness, sev_rank
from .timeline import incident_rows

MAX_EVIDENCE = 5  # evidence lines quoted per finding; the link leads to the rest


def _src(page: str, run: RunSummary, filename: str, text: str = "") -> tuple:
    return ("link", text or f"{run.name}/{filename}", rel(page, f"{run.rel}/{filename}"))


def _t(ts: str) -> str:
    return (ts or "time not recorded").replace("T", " ").split(".")[0].rstrip("Z") + \
        (" UTC" if ts else "")


def build(incident: str, runs: list[RunSummary], page: str,
          next_step: tuple[str, RunSummary | None] | None = None) -> Doc:
    """The draft for ``incident``; links are relative to ``page`` (the .md file's path)."""
    d = Doc()
    ordered = sorted(runs, key=lambda r: r.sort_time)
    readable = [r for r in ordered if not any("findings.json" in p for p in r.problems)]
    intact = [r for r in runs if r.verified and not r.problems] or runs
    worst = max(intact, key=lambda r: (badness(r), r.sort_time)) if intact else None
    d.h(1, f"Postmortem draft: incident {incident}")
    d.p("Draft pre-filled by opslib review from ", ("b", f"{len(runs)} run(s)"),
        " of this incident. Every line links to the evidence file it came from; nothing "
        "beyond that evidence is stated. Edit it into the team's postmortem.")

    # -------------------------------------------------------------- summary
    d.h(2, "Summary")
    items: list[Line] = []
    if worst is not None:
        items.append([f"Worst severity: {worst.severity.upper()}, seen by {worst.runbook} "
                      f"(run {worst.name}, status {worst.status}) — ",
                      _src(page, worst, "findings.json")])
    span = [r for r in ordered if r.started_at]
    if span:
        items.append([f"Runs from {_t(span[0].started_at)} to "
                      f"{_t(span[-1].finished_at or span[-1].started_at)}: "
                      + ", ".join(f"{r.runbook} ({r.status})" for r in span) + " — ",
                      _src(page, span[0], MANIFEST, f"{span[0].name}/{MANIFEST}"),
                      " … ", _src(page, span[-1], MANIFEST, f"{span[-1].name}/{MANIFEST}")])
    apps = sorted({(r.app, r.target) for r in runs if r.app})
    for app, target in apps:
        r = next(x for x in ordered if (x.app, x.target) == (app, target))
        items.append([f"App {app}, target {target}" +
                      (" (demo data: not a real system)" if target == "demo" else "") + " — ",
                      _src(page, r, "findings.json")])
    if next_step:
        text, run = next_step
        items.append([f"Next step the evidence points to: {text}"] +
                     ([" — ", _src(page, run, "findings.json")] if run else []))
    d.ul(items)

    # -------------------------------------------------------------- impact
    d.h(2, "Impact")
    seen: dict[tuple[str, str], list] = {}  # (runbook, finding id) → [run, finding, count]
    for r in readable:
        for f in r.findings:
            if f.get("severity") not in ("critical", "warning"):
                continue
            key = (r.runbook, f.get("id", ""))
            if key in seen:  # the same finding in a later run of the runbook: count it once
                seen[key][2] += 1
            else:
                seen[key] = [r, f, 1]
    items: list[Line] = []
    for r, f, n in seen.values():
        items.append([("b", f.get("severity", "").upper()),
                      f" {f.get('title', '')} ({r.runbook}"
                      + (f"; first of {n} runs reporting it" if n > 1 else "") + ") — ",
                      _src(page, r, "findings.json")])
    metric_lines: list[Line] = []
    for r in readable:
        for name, m in metrics_of(r).items():
            if m.source != "title":
                metric_lines.append([f"{name} = {m.value:g} {m.unit}".rstrip() + f" ({r.runbook}) — ",
                                     _src(page, r, "findings.json")])
    d.ul(items + metric_lines)
    if not items and not metric_lines:
        d.p("No finding at warning or critical in this incident's evidence, and no metrics.")

    # -------------------------------------------------------------- timeline
    d.h(2, "Timeline")
    rows = []
    for row in incident_rows(runs):
        if not row.notable and not row.error:
            continue
        what = row.what + (f" — {row.outcome}" if row.outcome and row.kind != "finding" else "")
        if row.kind == "action" and row.detail:
            what += f": {row.detail}"
        if not row.timed:
            what += " (time: end of the run that reported it)"
        src = "timeline.jsonl" if row.kind in ("run", "call") or (row.kind == "action" and row.timed) \
            else "findings.json"
        rows.append([[_t(row.ts.isoformat().replace("+00:00", "Z")) if row.ts else "—"],
                     [row.kind], [what], [_src(page, row.run, src)]])
    d.table(["Time (UTC)", "Kind", "Event", "Source"], rows)
    if not rows:
        d.p("No timeline events were recorded.")

    # -------------------------------------------------------------- findings and evidence
    d.h(2, "Findings and the evidence behind them")
    for r in ordered:
        d.h(3, f"{r.runbook or '?'} — run {r.name} — {r.severity.upper()}")
        if r.problems:
            d.ul([[f"This run could not be read fully: {p} — ", _src(page, r, MANIFEST)]
                  for p in r.problems])
        if not r.verified:
            d.ul([[f"Integrity: this run FAILS verification ({p}) — ",
                   _src(page, r, MANIFEST)] for p in r.verify_problems[:10]])
        items = []
        for f in sorted(r.findings, key=lambda f: -sev_rank(f.get("severity", ""))):
            if f.get("severity") == "info" and not str(f.get("title", "")).startswith("skipped"):
                continue
            ev = [[("code", e)] for e in f.get("evidence", [])[:MAX_EVIDENCE]]
            more = len(f.get("evidence", [])) - MAX_EVIDENCE
            if more > 0:
                ev.append([f"… {more} more line(s) in ", _src(page, r, "findings.json")])
            line: Line = [("b", f.get("severity", "").upper()), f" {f.get('title', '')}"]
            if f.get("detail"):
                line.append(f": {f['detail']}")
            line += [" — ", _src(page, r, "findings.json")]
            if ev:
                line.append(("sub", ev))
            items.append(line)
        d.ul(items)
        links: Line = ["Full evidence: "]
        if r.notebook_html:
            links += [_src(page, r, r.notebook_html, "executed notebook (HTML)"), ", "]
        links += [_src(page, r, "findings.json", "findings.json"), ", ",
                  _src(page, r, "timeline.jsonl", "timeline.jsonl")]
        for c in r.charts:
            links += [", ", _src(page, r, f"charts/{c}", f"chart {c}")]
        d.p(*links)

    # -------------------------------------------------------------- actions
    d.h(2, "Actions taken")
    items = []
    for r in ordered:
        for a in r.actions:
            items.append([("b", a.get("status", "planned")), f" {a.get('title', '')}: ",
                          ("code", a.get("command", "")), f" ({r.runbook}) — ",
                          _src(page, r, "findings.json")])
    d.ul(items)
    applied = [a for r in runs for a in r.actions if a.get("status") == "applied"]
    if not items:
        d.p("No run planned or applied an action.")
    elif not applied:
        d.p("No action was applied by opslib in this incident: every action above was only "
            "planned (or refused). Anything done by hand is not in this evidence.")

    # -------------------------------------------------------------- escalations
    d.h(2, "Escalations")
    items = []
    for r in ordered:
        if r.escalation:
            items.append([f"Level {r.escalation_level} ({r.escalation.get('team', '')}) from "
                          f"{r.runbook}: {r.escalation.get('reason', '')} — ",
                          _src(page, r, "findings.json")])
    d.ul(items)
    if not items:
        d.p("No run recorded an escalation.")

    # -------------------------------------------------------------- open questions
    d.h(2, "Open questions")
    d.ul(open_questions(runs, page))
    return d


def open_questions(runs: list[RunSummary], page: str) -> list[Line]:
    """Questions the evidence raises but does not answer, each pointing at its source."""
    out: list[Line] = []
    for r in sorted(runs, key=lambda r: r.sort_time):
        if not r.verified:
            out.append([f"Run {r.name} fails verification: who changed its evidence, and can "
                        "its conclusions be trusted? — ", _src(page, r, MANIFEST)])
        if r.problems:
            out.append([f"Run {r.name} could not be read fully ({'; '.join(r.problems)}): "
                        "what did it see? — ", _src(page, r, MANIFEST)])
        if r.status not in ("ok", "unknown") or (r.status == "unknown" and not r.problems):
            err = r.error.get("evalue") or r.error.get("ename") or ""
            out.append([f"{r.runbook} did not complete ({r.status}{': ' + err if err else ''}): "
                        "what would its remaining checks have shown? — ",
                        _src(page, r, "run.log")])
        for f in r.findings:
            sev = f.get("severity")
            title = str(f.get("title", ""))
            if sev == "unknown":
                out.append([f"{r.runbook} could not check: {title}. What was the state? — ",
                            _src(page, r, "findings.json")])
            elif sev == "info" and title.startswith("skipped"):
                out.append([f"{r.runbook} {title}: would it have changed the picture? — ",
                            _src(page, r, "findings.json")])
        for a in r.actions:
            if a.get("status") == "planned":
                out.append(["Was ", ("code", a.get("command", "")), " run by hand, and with what "
                            "result? (planned, not applied by opslib) — ",
                            _src(page, r, "findings.json")])
            elif a.get("status") in ("refused", "failed"):
                out.append([f"Action {a.get('id', '')} was {a.get('status')}: was the target "
                            "fixed another way? — ", _src(page, r, "findings.json")])
    fixed = any(a.get("status") == "applied" for r in runs for a in r.actions)
    by_book: dict[str, list[RunSummary]] = {}
    for r in sorted(runs, key=lambda r: r.sort_time):
        by_book.setdefault(r.runbook, []).append(r)
    for book, seq in by_book.items():
        crit = [r for r in seq if r.severity == "critical"]
        if not crit:
            continue
        last = seq[-1]
        if last.severity == "critical":
            out.append([f"{book} is still CRITICAL in its latest run ({last.name}): is a run "
                        "after the fix missing, or is the incident still open? — ",
                        _src(page, last, "findings.json")])
        elif last.status == "ok" and not fixed:
            out.append([f"{book} went from CRITICAL ({crit[-1].name}) to {last.severity.upper()} "
                        f"({last.name}) with no action applied by opslib: what changed in "
                        "between? — ", _src(page, crit[-1], "findings.json"), " → ",
                        _src(page, last, "findings.json")])
    if not out:
        out.append(["None raised by the evidence: every run completed, verified, and checked "
                    "everything it set out to — "] + ([_src(page, runs[0], "findings.json")]
                                                      if runs else ["no runs"]))
    return out


__all__ = ["build", "open_questions"]
