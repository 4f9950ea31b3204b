"""Compare two runs (e.g. before and after a remediation): findings added, resolved, changed.

Findings are matched by ``id``:

* **added**    — the id is only in run B;
* **resolved** — the id is only in run A;
* **changed**  — the id is in both and its severity, title or detail differ (severity moves
  are called better or worse).

**Key metrics**, side by side, come from, in this order of preference:

1. a ``metrics`` object at the top of ``findings.json`` (``{"name": number}`` or
   ``{"name": {"value": number, "unit": "ms"}}``), named as given;
2. a ``metrics`` object on a finding, named ``<finding id>.<name>``;
3. otherwise the numbers in a finding's *title*: each number is a metric named
   ``<finding id> <word before it>`` (or ``#n``, its position, when no word precedes it), with
   the word after it as its unit when that word is a unit (``ms``, ``s``, ``%``, ``MB``…).
   E.g. "/health latency p95 2597 ms (p50 2182, max 2630)" gives ``health-latency p95 = 2597
   ms``, ``health-latency p50 = 2182``, ``health-latency max = 2630``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .html import action_status, esc, link, page, sev_badge, status_badge, table, when
from .scan import RunSummary, sev_rank

_NUM = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(%?)")
_WORD = re.compile(r"([A-Za-z][A-Za-z0-9_]*)[^A-Za-z0-9]{0,3}$")
UNITS = {"ms", "s", "sec", "seconds", "min", "minutes", "h", "hours", "days", "d", "%", "b",
         "kb", "mb", "gb", "kib", "mib", "gib", "bytes", "connections", "conns", "req/s",
         "rps", "qps"}


@dataclass
class Metric:
    value: float
    unit: str = ""
    source: str = ""  # "findings.json metrics" | "finding metrics" | "title"


@dataclass
class Comparison:
    a: RunSummary
    b: RunSummary
    added: list[dict] = field(default_factory=list)
    resolved: list[dict] = field(default_factory=list)
    changed: list[tuple[dict, dict]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    metrics: list[tuple[str, Metric | None, Metric | None]] = field(default_factory=list)

    def paired(self) -> tuple[list, list]:
        """(metrics in both runs — the key ones, metrics in one run only)."""
        both = [m for m in self.metrics if m[1] is not None and m[2] is not None]
        return both, [m for m in self.metrics if m[1] is None or m[2] is None]


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _metric(value: Any, source: str) -> Metric | None:
    if isinstance(value, dict):
        v = _num(value.get("value"))
        return Metric(v, str(value.get("unit") or ""), source) if v is not None else None
    v = _num(value)
    return Metric(v, "", source) if v is not None else None


def title_metrics(finding_id: str, title: str) -> dict[str, Metric]:
    """Numbers in a finding title, named as the module docstring says."""
    out: dict[str, Metric] = {}
    for n, m in enumerate(_NUM.finditer(title), 1):
        before = _WORD.search(title[:m.start()])
        label = before.group(1) if before else f"#{n}"
        rest = title[m.end():].lstrip()
        unit = m.group(2)
        if not unit:
            word = re.match(r"[A-Za-z/]+", rest)
            if word and word.group(0).lower() in UNITS:
                unit = word.group(0)
        name = f"{finding_id} {label}"
        if name in out:
            name = f"{finding_id} #{n}"
        out[name] = Metric(float(m.group(1)), unit, "title")
    return out


def metrics_of(run: RunSummary) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for name, value in (run.metrics or {}).items():
        m = _metric(value, "findings.json metrics")
        if m:
            out[str(name)] = m
    for f in run.findings:
        fid = f.get("id") or "?"
        if isinstance(f.get("metrics"), dict) and f["metrics"]:
            for name, value in f["metrics"].items():
                m = _metric(value, "finding metrics")
                if m:
                    out[f"{fid}.{name}"] = m
        else:
            for name, m in title_metrics(fid, f.get("title", "")).items():
                out.setdefault(name, m)
    return out


def compare(a: RunSummary, b: RunSummary) -> Comparison:
    c = Comparison(a, b)
    fa = {f.get("id"): f for f in a.findings}
    fb = {f.get("id"): f for f in b.findings}
    for fid, f in fb.items():
        if fid not in fa:
            c.added.append(f)
    for fid, f in fa.items():
        if fid not in fb:
            c.resolved.append(f)
        elif any(f.get(k) != fb[fid].get(k) for k in ("severity", "title", "detail")):
            c.changed.append((f, fb[fid]))
        else:
            c.unchanged.append(fid)
    ma, mb = metrics_of(a), metrics_of(b)
    names = list(dict.fromkeys([*ma, *mb]))
    c.metrics = [(n, ma.get(n), mb.get(n)) for n in names]
    return c


def _direction(fa: dict, fb: dict) -> str:
    ra, rb = sev_rank(fa.get("severity", "")), sev_rank(fb.get("severity", ""))
    return "worse" if rb > ra else "better" if rb < ra else "same severity"


def _m(m: Metric | None) -> str:
    if m is None:
        return "—"
    v = f"{m.value:g}"
    return f"{v} {m.unit}".strip() if m.unit != "%" else f"{v}%"


def _delta(ma: Metric | None, mb: Metric | None) -> str:
    if ma is None or mb is None:
        return ""
    d = mb.value - ma.value
    return f"{d:+g}" if d else "="


def text(c: Comparison) -> str:
    """The comparison as a text summary for the terminal."""
    a, b = c.a, c.b
    lines = [f"A: {a.rel}  ({a.runbook}, {a.target}, {a.started_at or '?'})",
             f"B: {b.rel}  ({b.runbook}, {b.target}, {b.started_at or '?'})", ""]
    rows = [("status", a.status, b.status), ("severity", a.severity.upper(), b.severity.upper()),
            ("escalation", _esc_text(a), _esc_text(b)),
            ("verified", _ver_text(a), _ver_text(b))]
    w = max(len(r[1]) for r in rows) + 2
    lines += [f"  {k:<11} {va:<{w}} → {vb}" for k, va, vb in rows]
    for run in (a, b):
        if run.problems:
            lines.append(f"  ! {run.rel}: " + "; ".join(run.problems))
    lines.append("")
    lines.append(f"findings: {len(c.added)} added, {len(c.resolved)} resolved, "
                 f"{len(c.changed)} changed, {len(c.unchanged)} unchanged")
    lines += [f"  + {f.get('severity', '').upper():<9} {f.get('id')}: {f.get('title')}" for f in c.added]
    lines += [f"  - {f.get('severity', '').upper():<9} {f.get('id')}: {f.get('title')}" for f in c.resolved]
    for fa, fb in c.changed:
        lines.append(f"  ~ {fa.get('id')}: {fa.get('severity', '').upper()} → "
                     f"{fb.get('severity', '').upper()} ({_direction(fa, fb)})")
        if fa.get("title") != fb.get("title"):
            lines.append(f"      was: {fa.get('title')}")
            lines.append(f"      now: {fb.get('title')}")
    both, one = c.paired()
    if both:
        lines += ["", "key metrics (A → B):"]
        w = max(len(n) for n, _, _ in both)
        for n, ma, mb in both:
            lines.append(f"  {n:<{w}}  {_m(ma):>12} → {_m(mb):<12} {_delta(ma, mb)}")
    if one:
        lines.append(f"  ({len(one)} other number(s) appear in one run only; see the page)")
    return "\n".join(lines)


def _esc_text(r: RunSummary) -> str:
    return f"L{r.escalation_level} {r.escalation.get('team', '')}".strip() if r.escalation else "—"


def _ver_text(r: RunSummary) -> str:
    return "verified" if r.verified else "FAILS VERIFICATION"


def html_page(c: Comparison, path: str, *, run_pages: tuple[str, str] | None = None,
              crumbs: list[tuple[str, str]] = ()) -> str:
    """The comparison as a page written at ``path`` (relative to reports/)."""
    a, b = c.a, c.b

    def run_cell(r: RunSummary, page_path: str | None) -> str:
        name = link(path, page_path, r.rel) if page_path else esc(r.rel)
        return name

    pa, pb = run_pages or (None, None)
    side = [
        ("run", run_cell(a, pa), run_cell(b, pb)),
        ("runbook / target", esc(f"{a.runbook} / {a.target}"), esc(f"{b.runbook} / {b.target}")),
        ("started", when(a.started_at), when(b.started_at)),
        ("status", status_badge(a.status), status_badge(b.status)),
        ("severity", sev_badge(a.severity), sev_badge(b.severity)),
        ("escalation", esc(_esc_text(a)) + f'<div class="small">{esc(a.escalation.get("reason", ""))}</div>',
         esc(_esc_text(b)) + f'<div class="small">{esc(b.escalation.get("reason", ""))}</div>'),
        ("verification", _ver_html(a), _ver_html(b)),
        ("actions", _actions_html(a), _actions_html(b)),
    ]
    body = [f"<h1>Compare: {esc(a.name)} → {esc(b.name)}</h1>",
            table(["", "A (before)", "B (after)"], [[f"<b>{esc(k)}</b>", va, vb]
                                                   for k, va, vb in side])]
    for r in (a, b):
        if r.problems:
            body.append(f'<div class="note">{esc(r.rel)}: ' + "; ".join(esc(p) for p in r.problems)
                        + "</div>")
    body.append(f"<h2>Findings: {len(c.added)} added, {len(c.resolved)} resolved, "
                f"{len(c.changed)} changed, {len(c.unchanged)} unchanged</h2>")
    rows, classes = [], []
    for f in c.added:
        rows.append(["added", esc(f.get("id")), "—", sev_badge(f.get("severity", "")),
                     esc(f.get("title"))])
        classes.append("added")
    for f in c.resolved:
        rows.append(["resolved", esc(f.get("id")), sev_badge(f.get("severity", "")), "—",
                     esc(f.get("title"))])
        classes.append("resolved")
    for fa, fb in c.changed:
        t = esc(fb.get("title")) if fa.get("title") == fb.get("title") else \
            f"<div>A: {esc(fa.get('title'))}</div><div>B: {esc(fb.get('title'))}</div>"
        rows.append([f"changed ({esc(_direction(fa, fb))})", esc(fa.get("id")),
                     sev_badge(fa.get("severity", "")), sev_badge(fb.get("severity", "")), t])
        classes.append("changed")
    if rows:
        body.append(table(["change", "finding id", "A", "B", "title"], rows, cls="findings-diff",
                          row_classes=classes))
    else:
        body.append("<p>The two runs have the same findings.</p>")
    both, one = c.paired()

    def mtable(items: list, cls: str) -> str:
        return table(["metric", "A", "B", "change", "from"],
                     [[esc(n), esc(_m(ma)), esc(_m(mb)), esc(_delta(ma, mb)),
                       esc((ma or mb).source if (ma or mb) else "")] for n, ma, mb in items],
                     cls=cls)

    body.append("<h2>Key metrics (side by side)</h2>")
    body.append(mtable(both, "metrics") if both else
                "<p>No metric appears in both runs.</p>")
    if one:
        body.append(f"<details><summary>{len(one)} number(s) in one run only</summary>"
                    f"{mtable(one, 'metrics-one-side')}</details>")
    body.append('<p class="muted small">Metrics come from a <code>metrics</code> object in '
                "findings.json or on a finding when present, otherwise from the numbers in "
                "finding titles (named by finding id and the word before the number, or its "
                "position #n).</p>")
    return page(f"Compare {a.name} → {b.name}", "".join(body), path=path, crumbs=list(crumbs))


def _ver_html(r: RunSummary) -> str:
    if r.verified:
        return f'<span class="verified">✔ verified</span> <span class="small">({r.files_checked} files)</span>'
    return ('<span class="flag-red">✖ FAILS VERIFICATION</span><div class="small">'
            + "<br>".join(esc(p) for p in r.verify_problems[:5]) + "</div>")


def _actions_html(r: RunSummary) -> str:
    if not r.actions:
        return '<span class="muted">none</span>'
    return "<br>".join(f"{action_status(x.get('status', ''))} <code>{esc(x.get('command') or x.get('title'))}</code>"
                       for x in r.actions)


__all__ = ["Comparison", "Metric", "compare", "text", "html_page", "metrics_of", "title_metrics"]
