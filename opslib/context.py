"""The run as a notebook sees it: ``run = opslib.start("health", globals())``.

``start`` reads the runbook's declared parameters from the notebook namespace, builds the
target and the session (demo and replay answer from captures, live records into ``raw/``),
and shows the seed's header table. The notebook then collects, shows tables and charts, adds
findings and planned actions, and ends with ``run.finish()``, which writes ``findings.json``.

Under ``python -m opslib run`` the runner gives the run folder (``OPSLIB_RUN_DIR``) and packs
the evidence afterwards. Stepping through in JupyterLab, the run writes to a scratch folder
and says so: an evidence pack comes only from ``make run``.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import __version__
from .actions import Action, ApplyContext, apply_plan
from .catalog import REPO_ROOT, get_runbook
from .config import DEMO_APP, Target, env, parse_target, resolve_app_url
from .errors import UsageError
from .evidence import atomic_write_json
from .findings import FINDINGS_SCHEMA, Finding, rank, worst
from .thresholds import thresholds
from .escalation import escalation
from .reads import Reading, Readings, coverage
from .redact import Redactor
from .session import Session
from .times import iso

DEMO_CAPTURES = Path(__file__).resolve().parent / "demo" / "captures"
RUN_DIR_ENV = "OPSLIB_RUN_DIR"


def _display(obj: Any, **kwargs: Any) -> Any:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        return display(obj, **kwargs)
    print(obj if isinstance(obj, str) else getattr(obj, "data", obj))
    return None


def _markdown(text: str) -> Any:
    from IPython.display import Markdown

    return Markdown(text)


def demo_scenarios(runbook: str) -> list[str]:
    folder = DEMO_CAPTURES / runbook
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _md_cell(value: Any) -> str:
    """Text from outside (titles, error bodies, instance names) in a Markdown table cell:
    every Markdown- and HTML-active character escaped, so nothing in it renders as markup or
    runs as script when the notebook or its HTML is opened."""
    from .review.doc import md_text

    return md_text(value)


def _md_code(value: Any, cell: bool = True) -> str:
    """A code span of outside text (inert: HTML in it is shown, not rendered); in a table
    cell its pipes are escaped as GFM requires."""
    from .review.doc import md_code

    code = md_code(value)
    return code.replace("|", "\\|") if cell else code


@dataclass
class Run:
    runbook: str
    params: dict[str, Any]
    target: Target
    session: Session
    run_dir: Path
    interactive: bool
    incident: str
    on_call: str
    findings: list[Finding] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    version: str = ""
    apply_record: dict[str, Any] | None = None
    _header: Any = None
    _finished: bool = False
    # what the run read, by key: a re-run cell replaces its readings (see :meth:`sources`)
    _readings: dict[str, Reading] = field(default_factory=dict)
    # where each finding was added from: (call site, execution), parallel to ``findings``
    _origins: list[tuple[str, Any]] = field(default_factory=list)
    # the notebook's globals when stepping through in JupyterLab (see _sync_params)
    _namespace: Any = None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    evidence: Path | None = None  # where an interactive live run's evidence was packed

    # ------------------------------------------------------------------ basics
    @property
    def now(self) -> datetime:
        return self.session.now()

    @property
    def thresholds(self) -> dict[str, tuple[float, float]]:
        self._sync_params()
        return thresholds(self.params.get("thresholds") or {})

    def _sync_params(self) -> None:
        """Stepping through: a parameter edited after the start cell is taken up here (the
        header says so); one that changes what is being looked at needs the start cell."""
        if self._namespace is None:
            return
        spec = get_runbook(self.runbook)
        now = {p.name: self._namespace.get(p.name, p.default) for p in spec.params}
        changed = sorted(k for k in now if now[k] != self.params.get(k))
        if not changed:
            return
        moved = [k for k in changed if k in ("app", "app_url", "target", "scenario", "incident")]
        if moved:
            raise UsageError(f"{', '.join(moved)} changed since the start cell",
                             hint="re-run the cell with `run = opslib.start(...)`, then the "
                                  "cells after it")
        self.params = {**self.params, **{k: now[k] for k in changed}}
        self.note(f"_parameters changed since the start cell: {', '.join(changed)} "
                  "(taken up from here on)_")
        if self._header is not None:
            self._header.update(_markdown(self._header_md()))

    @property
    def app(self) -> str:
        return self.target.app

    def note(self, markdown: str) -> None:
        """Show a line of narrative computed from the data."""
        _display(_markdown(markdown))

    def show(self, df: Any, caption: str = "") -> None:
        """Show a table; None (a skipped or failed source) is said in words."""
        if caption:
            self.note(f"**{caption}**")
        if df is None:
            self.note("_no data: the source was skipped or failed (see findings)_")
        else:
            _display(df)

    # ------------------------------------------------------------------ header
    def _header_md(self) -> str:
        rows = [("App Name", self.app or "(not set)"),
                ("Version", self.version or "(not known yet)"),
                ("Date", iso(self.now)),
                ("On-Call Contact", self.on_call or "not set (set OPS_ON_CALL or on_call=…)"),
                ("Runbook", f"{self.runbook} · opslib {__version__}"),
                ("Target", self._target_text()),
                ("Incident", self.incident)]
        md = "| Field | Value |\n|-------|-------|\n" + "\n".join(
            f"| **{k}** | {_md_cell(v)} |" for k, v in rows)
        if self.target.kind == "demo":
            md += ("\n\n> **Demo target.** This run used the bundled demo capture "
                   f"`{self.target.scenario}`, not a live app. Nothing here describes a real "
                   "system.")
        if self.interactive:
            md += ("\n\n> Interactive run: scratch output in "
                   f"`{self.run_dir}`. For an evidence pack use `make run issue={self.runbook}`.")
        return md

    def _target_text(self) -> str:
        if self.target.kind == "demo":
            return f"demo (scenario {self.target.scenario})"
        if self.target.kind == "replay":
            return f"replay of {self.session.capture_meta.get('replayed_from') or self.target.capture}"
        return f"live ({self.target.app_url})"

    def set_version(self, version: str) -> None:
        """Fill the header's Version once a source has told us (e.g. the Fly release)."""
        self.version = version
        if self._header is not None:
            self._header.update(_markdown(self._header_md()))

    # ------------------------------------------------------------------ findings
    def add(self, findings: Finding | Iterable[Finding]) -> None:
        """Add findings. Re-running a cell replaces what it added before (the same call site
        in an earlier execution) and any earlier finding with the same id: stepping through
        in JupyterLab never counts a finding twice."""
        items = [findings] if isinstance(findings, Finding) else list(findings)
        site, execution = _origin()
        ids = {f.id for f in items}
        kept = [(f, o) for f, o in zip(self.findings, self._origins)
                if o[1] == execution or (o[0] != site and f.id not in ids)]
        self.findings = [f for f, _ in kept] + items
        self._origins = [o for _, o in kept] + [(site, execution)] * len(items)
        self._save()

    def finding(self, id: str, severity: str, title: str, detail: str = "",
                evidence: Iterable[str] = (), **kwargs: Any) -> Finding:
        f = Finding(id, severity, title, detail, list(evidence), **kwargs)
        self.add(f)
        return f

    def sources(self, readings: Readings) -> None:
        """Show what was read — measured, failed or skipped — and record every source that
        was skipped (not configured) as a visible info finding saying what to set."""
        self._readings.update(readings)
        self.show(readings.frame(), "What this run read")
        for r in readings.skipped_sources():
            self.finding(f"skipped-{r.source.lower().replace(' ', '-')}", "info",
                         f"skipped: {r.source} not configured", r.detail)
            self.note(f"⏭ **skipped: {_md_cell(r.source)} not configured** — "
                      f"{_md_cell(r.detail)}")

    def plan(self, actions: list[Action]) -> dict[str, Any]:
        """Record the remediation plan; apply it only if ``apply`` and ``confirm`` match it.

        See :mod:`opslib.actions`. Shows each action's ``fly`` command, its status, and how to
        apply the plan.
        """
        record = apply_plan(ApplyContext(self.session, self.target), self.runbook, actions,
                            apply=bool(self.params.get("apply")),
                            confirm=str(self.params.get("confirm") or ""))
        self.actions = [a.to_dict() for a in actions]
        self.apply_record = record
        self._save()
        if not actions:
            self.note("No remediation is called for by what this run saw.")
            return record
        lines = ["| Action | `fly` command | API call | Status |", "|---|---|---|---|"]
        for a in actions:
            api = f"{a.api.get('method', '')} {a.api.get('path', '') or a.api.get('sql', '')}"
            lines.append(f"| {_md_cell(a.title)} | {_md_code(a.command)} | {_md_code(api)} "
                         f"| {a.status} |")
        digest = record["plan_digest"]
        if record["outcome"] == "planned":
            lines += ["", f"Plan digest **`{digest}`**. Nothing was changed. To apply exactly "
                      f"this plan: `make run issue={self.runbook} app={self.app} apply=true "
                      f"confirm={digest}` (refused if the target changes before then)."]
        elif record["outcome"] == "refused":
            lines += ["", f"**Apply refused**: confirmation `{record['confirm']}` does not match "
                      f"the current plan `{digest}`. Nothing was changed."]
        else:
            lines += ["", f"Apply outcome: **{record['outcome']}** (plan `{digest}`)."]
        _display(_markdown("\n".join(lines)))
        return record

    def chart(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``charts/<name>.png`` and show it."""
        path = self.run_dir / "charts" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".png.tmp")
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
        # A bare matplotlib Figure (no pyplot) has no image repr in a kernel: show the PNG.
        from IPython import get_ipython

        if get_ipython() is not None:
            from IPython.display import Image

            _display(Image(data=path.read_bytes(), format="png"))
        else:
            print(f"[chart saved: charts/{name}.png]")
        return path

    # ------------------------------------------------------------------ output
    def coverage(self) -> tuple[dict[str, Any], list[Finding]]:
        """The ``coverage`` block, and the ``unknown`` finding when the verdict is blind: a
        check it rests on could not run, or nothing was read at all."""
        cov = coverage(self._readings.values())
        blind = [self._readings[k] for k in cov["blind"]]
        if blind:
            by_source: dict[str, list[Reading]] = {}
            for r in blind:
                by_source.setdefault(r.source or r.key, []).append(r)
            return cov, [Finding("coverage", "unknown",
                                 "not checked: " + "; ".join(
                                     f"{src} ({', '.join(sorted({r.outcome for r in rs}))}"
                                     + (f", {len(rs)} reads)" if len(rs) > 1 else ")")
                                     for src, rs in by_source.items()),
                                 f"{len(blind)} of the {len(cov['checks'])} reads this "
                                 "verdict rests on were not measured, so it cannot say ok",
                                 [f"{r.what}: {r.outcome}: {r.detail}" for r in blind],
                                 source="coverage")]
        if not cov["checks"]:
            return cov, [Finding("coverage", "unknown",
                                 "nothing was read: the verdict rests on no measurement",
                                 "the notebook recorded no reads (run.sources); run its "
                                 "Collect cell", source="coverage")]
        return cov, []

    def summary(self) -> dict[str, Any]:
        cov, blind = self.coverage()
        every = [*self.findings, *blind]
        sev = worst(f.severity for f in every)
        return {
            "schema": FINDINGS_SCHEMA,
            "runbook": self.runbook,
            "target": self.target.kind,
            "scenario": self.target.scenario or None,
            "app": self.app,
            "app_url": self.target.app_url,
            "incident": self.incident,
            "version": self.version or None,
            "reference_time": iso(self.now),
            "severity": sev,
            "findings": [f.to_dict() for f in sorted(every, key=lambda f: -rank(f.severity))],
            "escalation": escalation(every),
            "coverage": cov,
            "actions": self.actions,
            "plan_digest": (self.apply_record or {}).get("plan_digest"),
            "apply": self.apply_record,
            "complete": self._finished,
        }

    def _save(self) -> None:
        data = self.session.redactor.obj(self.summary())
        atomic_write_json(self.run_dir / "findings.json", data)

    def finish(self) -> dict[str, Any]:
        """Write findings.json (complete) and show the findings, escalation and actions."""
        self._sync_params()
        spec = get_runbook(self.runbook)
        if self.apply_record is None and "run.plan(" in spec.path.read_text(encoding="utf-8"):
            self.add(Finding("plan-not-run", "unknown",
                             "the remediation plan was not made: its cell did not run",
                             "run the Plan cell (it lists the actions for what was found), "
                             "then this one", source="coverage"))
        self._finished = True
        self._save()
        self.session.close()
        s = self.summary()
        if self.interactive and self.target.kind == "live":
            # a live diagnosis stepped through in JupyterLab is incident evidence too
            from .runner import pack_interactive

            self.evidence = pack_interactive(self.run_dir, self.runbook, self.incident,
                                             _saved_notebook(self._namespace), self.params,
                                             self.started)
        lines = [f"### Result: **{s['severity'].upper()}**", ""]
        if s["findings"]:
            lines += ["| Severity | Finding | Detail |", "|---|---|---|"]
            lines += [f"| {f['severity']} | {_md_cell(f['title'])} | {_md_cell(f['detail'])} |"
                      for f in s["findings"]]
        esc = s["escalation"]
        lines += ["", f"**Escalation:** level {esc['level']} ({esc['team']}) — "
                      f"{_md_cell(esc['reason'])}"]
        if self.actions:
            lines += ["", "**Actions:**"]
            lines += [f"- {a['status']}: {_md_cell(a['title'])} — {_md_code(a.get('command', ''), cell=False)}"
                      for a in self.actions]
        if self.evidence is not None:
            lines += ["", f"**Evidence packed:** `{self.evidence}` (verify: `make verify "
                      f"path={self.evidence}`). Save the notebook before this cell to include "
                      "its latest state."]
        _display(_markdown("\n".join(lines)))
        return s


def _saved_notebook(namespace: Any) -> Path | None:
    """The notebook file this kernel runs, as Jupyter names it (``__session__`` in the
    kernel's namespace, ``JPY_SESSION_NAME`` in its environment), or ``OPSLIB_NOTEBOOK``."""
    for value in (os.environ.get("OPSLIB_NOTEBOOK"),
                  (namespace or {}).get("__session__") if hasattr(namespace, "get") else None,
                  os.environ.get("JPY_SESSION_NAME")):
        if value and str(value).endswith(".ipynb") and Path(value).is_file():
            return Path(value)
    return None


def _needs_earlier_cell(notebook: Path) -> Any:
    """An IPython handler for NameError that says, in one line after the traceback, which
    earlier cell of this runbook sets the missing name (a skipped cell)."""
    import re

    from .catalog import defining_cell

    def handler(shell: Any, etype: type, value: BaseException, tb: Any,
                tb_offset: int | None = None) -> Any:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        match = re.search(r"name '([^']+)' is not defined", str(value))
        where = defining_cell(notebook, match.group(1)) if match else None
        if where is not None:
            print(f"→ `{match.group(1)}` is set by cell {where[0]} ({where[1] or 'above'}): "
                  "run that cell first, then this one again.")
        return None

    return handler


def _origin() -> tuple[str, Any]:
    """Where :meth:`Run.add` was called from (the first frame outside this module: in a
    kernel, a cell's file is named after its content) and the kernel's execution count."""
    import sys

    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    site = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython is a dependency
        shell = None
    return site, (shell.execution_count if shell is not None else None)


def _run_dir(runbook: str) -> tuple[Path, bool]:
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix=f"opslib-{runbook}-")), True


def _capture_for(kind: str, capture: Path | None, runbook: str, scenario: str) -> Path | None:
    if kind == "demo":
        folder = DEMO_CAPTURES / runbook / scenario
        if not folder.is_dir():
            known = ", ".join(demo_scenarios(runbook)) or "(none)"
            raise UsageError(f"no demo scenario {scenario!r} for {runbook}; scenarios: {known}")
        return folder
    return capture


def start(runbook: str, namespace: Mapping[str, Any]) -> Run:
    """Begin a run from the notebook's parameters (``globals()`` after the parameters cell)."""
    spec = get_runbook(runbook)
    params = {p.name: namespace.get(p.name, p.default) for p in spec.params}
    app = str(params.get("app") or "")
    app_url = str(params.get("app_url") or "")
    target_spec = str(params.get("target") or "")
    if target_spec.startswith("replay:"):
        raw = Path(target_spec[len("replay:"):])
        if not raw.is_absolute() and not raw.exists():
            target_spec = f"replay:{REPO_ROOT / raw}"
    kind, capture = parse_target(target_spec, app=app, app_url=app_url)
    scenario = str(params.get("scenario") or "") if kind == "demo" else ""
    if kind == "demo":
        scenario = scenario or "healthy"
        app = app or DEMO_APP
    capture = _capture_for(kind, capture, runbook, scenario)
    run_dir, interactive = _run_dir(runbook)
    redactor = Redactor.from_env()
    session = Session("replay" if kind in ("demo", "replay") else "record",
                      raw_dir=run_dir / "raw", capture_dir=capture,
                      timeline_path=run_dir / "timeline.jsonl", redactor=redactor,
                      rewind=interactive)
    target = Target(kind, app, resolve_app_url(app, app_url), scenario, capture)
    incident = str(params.get("incident") or "") or os.environ.get("OPSLIB_INCIDENT", "") or "adhoc"
    on_call = str(params.get("on_call") or "") or env("OPS_ON_CALL")
    run = Run(runbook, params, target, session, run_dir, interactive, incident, on_call)
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        from IPython.display import display

        run._header = display(_markdown(run._header_md()), display_id=True)
        if interactive:
            run._namespace = namespace
            shell.set_custom_exc((NameError,), _needs_earlier_cell(spec.path))
    else:
        print(run._header_md())
    run._save()
    return run
