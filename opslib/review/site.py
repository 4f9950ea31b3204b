"""The static review site over ``reports/``: index, incidents, runs, timelines, postmortems.

Pages (paths relative to ``reports/``)::

    index.html                               every incident and its latest runs (paged:
    _review/index-<n>.html                   INCIDENTS_PER_PAGE incidents a page)
    _review/<incident>/index.html            which runbooks found what, the next step, runs
    _review/<incident>/timeline.html         chart + every call, action and notable event
    _review/<incident>/postmortem.md|.html   the postmortem draft
    _review/<incident>/runs/<run>.html       one run: facts, integrity, findings, replay
    _review/<incident>/compare/<a>--<b>.html each run against the previous run of its runbook
    _review/compare/<a>--<b>.html            pages written by ``compare`` (listed on the index)
    _review/cache.json                       run summaries and page digests (incremental)

Building is incremental: only runs whose folder changed are re-read (see :mod:`.scan`) and
only pages whose content changed are written, each atomically, so a reader never sees a half
page and a build is safe while runs are being written (in-progress runs live in ``.staging``
and are not read). Pages of incidents or runs that disappeared are removed.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..catalog import REPO_ROOT
from ..evidence import atomic_write_text
from ..redact import Redactor
from . import compare as cmp
from . import postmortem
from .html import (action_status, esc, link, page, pager, rel, sev_badge, status_badge, table, url,
                   when, when_text)
from .scan import SITE_DIR, RunSummary, Scan, badness, load_cache, save_cache, scan, sev_rank
from .timeline import chart_svg, incident_rows
from .triage import READ_ONLY, latest_per_runbook, next_step

INCIDENTS_PER_PAGE = 20
RUNS_ON_INDEX = 8
RUNS_PER_PAGE = 100
TIMELINE_ROWS_PER_PAGE = 1000


@dataclass
class BuildReport:
    reports: Path
    incidents: int
    runs: int
    reread: int
    cached: int
    written: int
    unchanged: int
    removed: int
    failing: list[str]  # runs failing verification
    unreadable: list[str]
    seconds: float

    @property
    def index(self) -> Path:
        return self.reports / "index.html"

    def text(self) -> str:
        lines = [f"review: {self.incidents} incident(s), {self.runs} run(s) "
                 f"({self.reread} read, {self.cached} unchanged since the last build); "
                 f"{self.written} page(s) written, {self.unchanged} unchanged, "
                 f"{self.removed} removed in {self.seconds:.2f}s"]
        for r in self.failing:
            lines.append(f"  FAILS VERIFICATION  {r}")
        for r in self.unreadable:
            lines.append(f"  UNREADABLE          {r}")
        lines.append(f"open: {self.index}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- paths
def incident_page(incident: str, n: int = 1) -> str:
    return f"{SITE_DIR}/{incident}/index{'' if n == 1 else f'-{n}'}.html"


def timeline_page(incident: str, n: int = 1) -> str:
    return f"{SITE_DIR}/{incident}/timeline{'' if n == 1 else f'-{n}'}.html"


def run_page(run: RunSummary) -> str:
    return f"{SITE_DIR}/{run.incident}/runs/{run.name}.html"


def compare_page(a: RunSummary, b: RunSummary) -> str:
    return f"{SITE_DIR}/{b.incident}/compare/{a.name}--{b.name}.html"


def index_page(n: int = 1) -> str:
    return "index.html" if n == 1 else f"{SITE_DIR}/index-{n}.html"


def replay_path(reports: Path, run: RunSummary) -> str:
    """The run's path as ``make run`` (from the checkout) takes it."""
    full = (reports / run.rel).resolve()
    try:
        return full.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(full)


# --------------------------------------------------------------------------- pieces
def _verification(run: RunSummary, short: bool = True) -> str:
    if run.verified:
        return f'<span class="verified">✔ verified</span> <span class="small muted">({run.files_checked} files)</span>'
    if short:
        brief = run.verify_brief or run.verify_problems or ["not verified"]
        more = f"<br>+{len(brief) - 3} more" if len(brief) > 3 else ""
        return ('<span class="flag-red">✖ FAILS VERIFICATION</span><div class="small">'
                + "<br>".join(esc(b) for b in brief[:3]) + more + "</div>")
    return ('<span class="flag-red">✖ FAILS VERIFICATION</span><div class="small">'
            + "<br>".join(esc(p) for p in run.verify_problems) + "</div>")


def _status(run: RunSummary) -> str:
    out = status_badge(run.status)
    if run.problems:
        out += ('<div><span class="flag-warn">⚠ unreadable</span></div><div class="small">'
                + "<br>".join(esc(p) for p in run.problems) + "</div>")
    return out


def _evidence_links(run: RunSummary, path: str) -> str:
    parts = []
    if run.notebook_html:
        parts.append(link(path, f"{run.rel}/{run.notebook_html}", "notebook"))
    if "findings.json" in run.present:
        parts.append(link(path, f"{run.rel}/findings.json", "findings"))
    for c in run.charts[:3]:
        parts.append(link(path, f"{run.rel}/charts/{c}", f"chart: {c}"))
    if len(run.charts) > 3:
        parts.append(f"+{len(run.charts) - 3} charts")
    return " · ".join(parts)


def _escalation(run: RunSummary) -> str:
    if not run.escalation:
        return '<span class="muted">—</span>'
    return (f'L{run.escalation_level} {esc(run.escalation.get("team", ""))}'
            f'<div class="small muted">{esc(run.escalation.get("reason", ""))}</div>')


def _run_rows(runs: Iterable[RunSummary], path: str, prev: dict[str, RunSummary] | None = None
              ) -> tuple[list[list[str]], list[str]]:
    rows, classes = [], []
    for r in runs:
        row = [link(path, run_page(r), when_text(r.started_at) if r.started_at else r.name, "run"),
               esc(r.runbook or "?"), esc(r.target + (f" ({r.scenario})" if r.scenario else "")),
               esc(r.app), _status(r), sev_badge(r.severity), _escalation(r),
               _verification(r), _evidence_links(r, path)]
        if prev is not None:
            p = prev.get(r.rel)
            row.append(link(path, compare_page(p, r), f"vs {p.name}") if p else "")
        rows.append(row)
        classes.append("integrity-fail" if not r.verified else "")
    return rows, classes


RUN_HEADERS = ["Time (UTC)", "Runbook", "Target", "App", "Status", "Severity", "Escalation",
               "Verification", "Evidence"]


def _integrity_alert(runs: list[RunSummary], path: str) -> str:
    bad = [r for r in runs if not r.verified]
    out = ""
    if bad:
        items = "".join(f"<li>{link(path, run_page(r), r.rel)} — "
                        f"{esc('; '.join((r.verify_brief or r.verify_problems)[:3]))}</li>"
                        for r in bad)
        out += (f'<div class="alert" id="integrity"><span class="flag-red">✖ {len(bad)} run(s) '
                f"fail verification</span> — their evidence does not match its manifest; do not "
                f"trust them until explained (<code>make verify</code> lists every problem)."
                f"<ul>{items}</ul></div>")
    unread = [r for r in runs if r.problems]
    if unread:
        items = "".join(f"<li>{link(path, run_page(r), r.rel)} — {esc('; '.join(r.problems))}</li>"
                        for r in unread)
        out += (f'<div class="note" id="unreadable"><span class="flag-warn">⚠ {len(unread)} '
                f"run(s) could not be read fully</span><ul>{items}</ul></div>")
    return out


def _pages(n_items: int, per_page: int) -> int:
    return max(1, -(-n_items // per_page))


# --------------------------------------------------------------------------- pages
def render_index(incidents: dict[str, list[RunSummary]], all_runs: list[RunSummary],
                 comparisons: list[str] = ()) -> dict[str, str]:
    names = list(incidents)
    n_pages = _pages(len(names), INCIDENTS_PER_PAGE)
    paths = [index_page(i) for i in range(1, n_pages + 1)]
    out = {}
    for pno, path in enumerate(paths, 1):
        chunk = names[(pno - 1) * INCIDENTS_PER_PAGE: pno * INCIDENTS_PER_PAGE]
        body = [f"<h1>Incident evidence</h1><p>{len(names)} incident(s), {len(all_runs)} run(s). "
                "Each run links to its executed notebook, findings and charts; integrity is "
                "checked against each run's SHA-256 manifest.</p>",
                _integrity_alert(all_runs, path), pager(paths, pno, path)]
        if not names:
            body.append("<p>No runs yet. Run one with <code>make run issue=health</code>, then "
                        "<code>make review</code>.</p>")
        for inc in chunk:
            runs = incidents[inc]
            worst = max(runs, key=badness)
            bad = sum(not r.verified for r in runs)
            flag = f' <span class="flag-red">✖ {bad} fail verification</span>' if bad else ""
            rows, classes = _run_rows(runs[:RUNS_ON_INDEX], path)
            more = len(runs) - RUNS_ON_INDEX
            body.append(
                f'<section class="incident" id="incident-{esc(inc)}"><h2>'
                f"{link(path, incident_page(inc), inc)} {sev_badge(worst.severity)}{flag}</h2>"
                f'<p class="small">{len(runs)} run(s), latest {when(runs[0].started_at)} · '
                f"{link(path, timeline_page(inc), 'timeline')} · "
                f"{link(path, f'{SITE_DIR}/{inc}/postmortem.html', 'postmortem draft')} "
                f"({link(path, f'{SITE_DIR}/{inc}/postmortem.md', 'Markdown')})</p>"
                + table(RUN_HEADERS, rows, cls="runs", row_classes=classes)
                + (f"<p>{link(path, incident_page(inc), f'… {more} more run(s) of {inc}')}</p>"
                   if more > 0 else "") + "</section>")
        body.append(pager(paths, pno, path))
        if pno == 1 and comparisons:
            body.append("<h2>Saved comparisons</h2><ul>" + "".join(
                f"<li>{link(path, c, posixpath.basename(c)[:-5])}</li>" for c in comparisons)
                + "</ul>")
        out[path] = page("Incident evidence", "".join(body), path=path)
    return out


def render_incident(inc: str, runs: list[RunSummary], prev: dict[str, RunSummary]
                    ) -> dict[str, str]:
    n_pages = _pages(len(runs), RUNS_PER_PAGE)
    paths = [incident_page(inc, i) for i in range(1, n_pages + 1)]
    worst = max(runs, key=badness)
    step = next_step(runs)
    latest = latest_per_runbook(runs)
    have = {r.runbook for r in runs}
    out = {}
    for pno, path in enumerate(paths, 1):
        body = [f"<h1>Incident {esc(inc)} {sev_badge(worst.severity)}</h1>"
                f"<p>{len(runs)} run(s) from {when(runs[-1].started_at)} to "
                f"{when(runs[0].finished_at or runs[0].started_at)} · "
                f"{link(path, timeline_page(inc), 'timeline')} · "
                f"{link(path, f'{SITE_DIR}/{inc}/postmortem.html', 'postmortem draft')} "
                f"({link(path, f'{SITE_DIR}/{inc}/postmortem.md', 'Markdown')})</p>",
                _integrity_alert(runs, path)]
        if pno == 1:
            src = (f" — {link(path, run_page(step.run), 'evidence')}" if step.run else "")
            cmd = f"<div><code>{esc(step.command)}</code></div>" if step.command else ""
            caveat = ('<div class="small">Some of this incident\'s evidence fails verification: '
                      "this step rests on it.</div>" if any(not r.verified for r in runs) else "")
            body.append(f'<div class="next" id="next-step"><b>Next step:</b> {esc(step.text)}'
                        f"{src}{cmd}{caveat}</div>")
            rows = []
            for r in latest:
                top = sorted((f for f in r.findings if f.get("severity") not in ("info", "ok")),
                             key=lambda f: -sev_rank(f.get("severity", "")))[:3]
                found = "<br>".join(f"{sev_badge(f.get('severity', ''))} {esc(f.get('title'))}"
                                    for f in top) or '<span class="muted">nothing at warning or above</span>'
                rows.append([esc(r.runbook or "?"), sev_badge(r.severity), status_badge(r.status),
                             found, _escalation(r), link(path, run_page(r), r.name)])
            body.append("<h2>Which runbooks found what (latest run of each, worst first)</h2>"
                        + table(["Runbook", "Severity", "Status", "Found", "Escalation", "Run"],
                                rows, cls="by-runbook"))
            missing = [n for n in READ_ONLY if n not in have]
            if missing:
                body.append(f'<p class="small muted">Read-only runbooks with no run in this '
                            f"incident: {esc(', '.join(missing))}.</p>")
        chunk = runs[(pno - 1) * RUNS_PER_PAGE: pno * RUNS_PER_PAGE]
        rows, classes = _run_rows(chunk, path, prev)
        body += [f"<h2>Runs ({len(runs)})</h2>", pager(paths, pno, path),
                 table(RUN_HEADERS + ["Compare"], rows, cls="runs", row_classes=classes),
                 pager(paths, pno, path)]
        out[path] = page(f"Incident {inc}", "".join(body), path=path)
    return out


def render_run(run: RunSummary, reports: Path, prev: RunSummary | None) -> tuple[str, str]:
    path = run_page(run)
    facts = [("Runbook", esc(run.runbook or "?")), ("Incident", link(path, incident_page(run.incident), run.incident)),
             ("Target", esc(run.target + (f" (scenario {run.scenario})" if run.scenario else ""))),
             ("App", esc(run.app)), ("Started", when(run.started_at)),
             ("Finished", when(run.finished_at)), ("Status", _status(run)),
             ("Severity", sev_badge(run.severity)),
             ("Exit code", esc("—" if run.exit_code is None else run.exit_code)),
             ("Escalation", _escalation(run)),
             ("Verification", _verification(run, short=False))]
    facts += [(k.replace("_", " ").capitalize(), esc(v)) for k, v in run.facts.items()]
    body = [f"<h1>{esc(run.runbook or '?')} run {esc(run.name)} {sev_badge(run.severity)}</h1>",
            table(["", ""], [[f"<b>{esc(k)}</b>", v] for k, v in facts], cls="facts")]
    if not run.verified:
        body.append('<div class="alert" id="integrity"><span class="flag-red">✖ This run FAILS '
                    "verification</span>: its files do not match EVIDENCE_MANIFEST.json."
                    "<ul>" + "".join(f"<li><code>{esc(p)}</code></li>" for p in run.verify_problems)
                    + "</ul></div>")
    if run.problems:
        body.append('<div class="note" id="unreadable"><span class="flag-warn">⚠ Could not be read '
                    "fully</span><ul>" + "".join(f"<li>{esc(p)}</li>" for p in run.problems)
                    + "</ul></div>")
    if run.error:
        body.append(f'<div class="note"><b>Execution error</b>: {esc(run.error.get("ename", ""))}'
                    f'{" in cell " + esc(run.error["cell_index"]) if run.error.get("cell_index") else ""}'
                    f': {esc(run.error.get("evalue", ""))}</div>')
    body.append("<h2>Evidence</h2><p>" + " · ".join(
        link(path, f"{run.rel}/{name}", label) for name, label in (
            (run.notebook_html, "executed notebook (HTML)"), (run.notebook, "notebook (.ipynb)"),
            ("findings.json", "findings.json"), ("parameters.json", "parameters.json"),
            ("timeline.jsonl", "timeline.jsonl"), ("run.log", "run.log"),
            ("EVIDENCE_MANIFEST.json", "manifest"))
        if name and (name in run.present or name in (run.notebook, run.notebook_html)))
        + f" · {link(path, f'{run.rel}/raw/', 'raw/ capture')}</p>")
    for c in run.charts:
        src = rel(path, f"{run.rel}/charts/{c}")
        body.append(f'<figure><img src="{esc(url(src))}" alt="chart {esc(c)}" '
                    f'style="max-width:100%"><figcaption class="small">{esc(c)}</figcaption></figure>')
    body.append(f"<h2>Findings ({len(run.findings)})</h2>")
    if run.findings:
        rows = []
        for f in sorted(run.findings, key=lambda f: -sev_rank(f.get("severity", ""))):
            ev = "".join(f"<li><code>{esc(e)}</code></li>" for e in f.get("evidence", []))
            rows.append([sev_badge(f.get("severity", "")), f"<code>{esc(f.get('id'))}</code>",
                         f'<span class="finding-title">{esc(f.get("title"))}</span>',
                         esc(f.get("detail")), f"<ul>{ev}</ul>" if ev else ""])
        body.append(table(["Severity", "Id", "Finding", "Detail", "Evidence"], rows,
                          cls="findings"))
    body.append(f"<h2>Actions ({len(run.actions)})</h2>")
    if run.actions:
        body.append(table(["Status", "Action", "Command", "Reason"],
                          [[action_status(a.get("status", "")), esc(a.get("title")),
                            f"<code>{esc(a.get('command'))}</code>", esc(a.get("reason"))]
                           for a in run.actions], cls="actions"))
        if run.plan_digest:
            body.append(f"<p>Plan digest <code>{esc(run.plan_digest)}</code>; outcome: "
                        f"{esc(run.apply_outcome or 'planned')}.</p>")
    else:
        body.append("<p>None.</p>")
    where = replay_path(reports, run)
    body.append("<h2>Replay</h2><p>Re-run this analysis against this run's own capture "
                "(<code>raw/</code>), without touching the network:</p>"
                f"<pre>make run issue={esc(run.runbook or '?')} target=replay:{esc(where)}</pre>"
                "<p>Check that the replay reproduces the saved findings:</p>"
                f"<pre>python -m opslib review --check-replay {esc(where)}</pre>")
    if prev is not None:
        body.append(f"<p>{link(path, compare_page(prev, run), f'Compare with the previous {run.runbook} run ({prev.name})')}</p>")
    crumbs = [(f"incident {run.incident}", incident_page(run.incident))]
    return path, page(f"{run.runbook} {run.name}", "".join(body), path=path, crumbs=crumbs)


def render_timeline(inc: str, runs: list[RunSummary]) -> dict[str, str]:
    rows = incident_rows(runs)
    n_pages = _pages(len(rows), TIMELINE_ROWS_PER_PAGE)
    paths = [timeline_page(inc, i) for i in range(1, n_pages + 1)]
    acts = [r for r in rows if r.kind == "action"]
    counts = {s: sum(r.status == s for r in acts) for s in ("planned", "applied", "refused", "failed", "skipped")}
    dropped = sum(r.events_dropped for r in runs)
    out = {}
    for pno, path in enumerate(paths, 1):
        body = [f"<h1>Timeline of incident {esc(inc)}</h1>"]
        if pno == 1:
            body.append(chart_svg(runs, rows))
            body.append('<p id="action-counts"><b>Actions:</b> '
                        + " · ".join(f"{action_status(s)} {n}" for s, n in counts.items() if n or s in ("planned", "applied"))
                        + "</p>")
            notable = [r for r in rows if r.notable and r.kind != "run"]
            if notable:
                body.append("<h2>Notable events</h2>" + table(
                    ["Time (UTC)", "Kind", "Event", "Outcome", "Run"],
                    [[when(r.ts.isoformat()) if r.ts else "—", esc(r.kind),
                      esc(r.what) + (f"<div><code>{esc(r.detail)}</code></div>" if r.kind == "action" and r.detail else "")
                      + ("" if r.timed else '<div class="small muted">no time of its own: shown at the end of its run</div>'),
                      action_status(r.status) if r.kind == "action" else esc(r.outcome),
                      link(path, run_page(r.run), r.run.name)] for r in notable], cls="notable"))
        if dropped:
            body.append(f'<p class="note">{dropped} event(s) beyond {5000} per run are not shown; '
                        "they are in each run's timeline.jsonl.</p>")
        chunk = rows[(pno - 1) * TIMELINE_ROWS_PER_PAGE: pno * TIMELINE_ROWS_PER_PAGE]
        body += [f"<h2>Every event ({len(rows)})</h2>", pager(paths, pno, path), table(
            ["Time (UTC)", "Run", "Kind", "What", "Outcome", "Detail"],
            [[when(r.ts.isoformat()) if r.ts else "—", link(path, run_page(r.run), f"{r.run.runbook} {r.run.name}"),
              esc(r.kind), esc(r.what),
              action_status(r.status) if r.kind == "action" else esc(r.outcome), f"<code>{esc(r.detail)}</code>"]
             for r in chunk], cls="events",
            row_classes=["err" if r.error else "notable" if r.notable else "" for r in chunk]),
            pager(paths, pno, path)]
        out[path] = page(f"Timeline {inc}", "".join(body), path=path,
                         crumbs=[(f"incident {inc}", incident_page(inc))])
    return out


def render_postmortem(inc: str, runs: list[RunSummary]) -> dict[str, str]:
    step = next_step(runs)
    md_path = f"{SITE_DIR}/{inc}/postmortem.md"
    html_path = f"{SITE_DIR}/{inc}/postmortem.html"
    doc = postmortem.build(inc, runs, md_path, (step.text, step.run))
    body = (f'<p class="small">{link(html_path, md_path, "postmortem.md")} — the same draft in '
            "Markdown, to paste into the team's postmortem document.</p>" + doc.html())
    return {md_path: doc.markdown(),
            html_path: page(f"Postmortem draft {inc}", body, path=html_path,
                            crumbs=[(f"incident {inc}", incident_page(inc))])}


# --------------------------------------------------------------------------- build
def render_incident_all(inc: str, runs: list[RunSummary], reports: Path) -> dict[str, str]:
    """Every page of one incident: its index, timeline, postmortem, runs and comparisons."""
    pages: dict[str, str] = {}
    prev: dict[str, RunSummary] = {}
    last: dict[str, RunSummary] = {}
    for r in sorted(runs, key=lambda r: (r.sort_time, r.name)):
        if r.runbook and r.runbook in last:
            prev[r.rel] = last[r.runbook]
        if r.runbook:
            last[r.runbook] = r
    pages.update(render_incident(inc, runs, prev))
    pages.update(render_timeline(inc, runs))
    pages.update(render_postmortem(inc, runs))
    for r in runs:
        p = prev.get(r.rel)
        path, text = render_run(r, reports, p)
        pages[path] = text
        if p is not None:
            cpath = compare_page(p, r)
            pages[cpath] = cmp.html_page(cmp.compare(p, r), cpath,
                                         run_pages=(run_page(p), run_page(r)),
                                         crumbs=[(f"incident {inc}", incident_page(inc))])
    return pages


def render_all(sc: Scan) -> dict[str, str]:
    """Every page of the site (the build renders only what changed; this is the whole)."""
    pages = render_index(sc.incidents(), sc.runs, _comparisons(sc.reports))
    for inc, runs in sc.incidents().items():
        pages.update(render_incident_all(inc, runs, sc.reports))
    return pages


def _comparisons(reports: Path) -> list[str]:
    saved = reports / SITE_DIR / "compare"
    return sorted(f"{SITE_DIR}/compare/{p.name}" for p in saved.glob("*.html")) \
        if saved.is_dir() else []


def _code_digest() -> str:
    """Digest of this package's code: a changed renderer re-renders every page."""
    h = hashlib.blake2b(digest_size=8)
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()


def build_site(reports: Path, *, use_cache: bool = True) -> BuildReport:
    """Build (or update) the site under ``reports``; see the module docstring.

    An incident whose runs are all unchanged since the last build (same fingerprints, same
    code) keeps its pages without re-rendering them, provided they are still on disk.
    """
    t0 = time.perf_counter()
    reports = Path(reports)
    redactor = Redactor.from_env()
    cache = load_cache(reports) if use_cache else {}
    sc, run_cache = scan(reports, cache=cache, redactor=redactor)
    old_pages: dict[str, str] = cache.get("pages") or {}
    old_inc: dict[str, dict] = cache.get("incidents") or {}
    new_pages: dict[str, str] = {}
    new_inc: dict[str, dict] = {}
    counts = {"written": 0, "unchanged": 0}
    to_write: list[tuple[Path, str]] = []

    def emit(pages: dict[str, str]) -> None:
        for path, text in pages.items():
            # The reviewer's own secrets, should any have reached a run folder.
            safe = redactor.text(text) if redactor.literals else text
            digest = hashlib.blake2b(safe.encode(), digest_size=16).hexdigest()
            new_pages[path] = digest
            if old_pages.get(path) == digest and (reports / path).is_file():
                counts["unchanged"] += 1
                continue
            to_write.append((reports / path, safe))
            counts["written"] += 1

    incidents = sc.incidents()
    base = f"{_code_digest()}|{reports.resolve()}|{bool(redactor.literals)}"
    for inc, runs in incidents.items():
        key = hashlib.blake2b("|".join([base] + sorted(
            f"{r.rel}={run_cache[r.rel]['key']}" for r in runs)).encode(),
            digest_size=16).hexdigest()
        old = old_inc.get(inc)
        if old and old.get("key") == key and all(
                p in old_pages and (reports / p).is_file() for p in old["pages"]):
            for p in old["pages"]:
                new_pages[p] = old_pages[p]
            counts["unchanged"] += len(old["pages"])
            new_inc[inc] = old
            continue
        pages = render_incident_all(inc, runs, reports)
        emit(pages)
        new_inc[inc] = {"key": key, "pages": sorted(pages)}
    emit(render_index(incidents, sc.runs, _comparisons(reports)))
    _write_all(to_write)
    removed = 0
    for path in old_pages.keys() - new_pages.keys():
        try:
            (reports / path).unlink()
            removed += 1
        except FileNotFoundError:
            pass
    if removed:
        _prune_empty(reports / SITE_DIR)
    save_cache(reports, {"runs": run_cache, "pages": new_pages, "incidents": new_inc})
    return BuildReport(reports, len(incidents), len(sc.runs), sc.reread, sc.cached,
                       counts["written"], counts["unchanged"], removed,
                       [r.rel for r in sc.runs if not r.verified],
                       [r.rel for r in sc.runs if r.problems], time.perf_counter() - t0)


WRITERS = 16


def _write_all(items: list[tuple[Path, str]]) -> None:
    """Write pages atomically; concurrently, because each atomic write waits on an fsync."""
    if len(items) < 8:
        for path, text in items:
            atomic_write_text(path, text)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="review-write") as pool:
        for f in [pool.submit(atomic_write_text, path, text) for path, text in items]:
            f.result()


def _prune_empty(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        if Path(dirpath) != root and not dirnames and not filenames:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


__all__ = ["build_site", "BuildReport", "render_all", "render_incident_all", "run_page", "incident_page",
           "timeline_page", "compare_page", "index_page", "replay_path"]
