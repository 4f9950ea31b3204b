"""Reading ``reports/`` into run summaries, with a cache so a rebuild re-reads only changed runs.

Layout read (see ``reports/README.md``)::

    reports/<incident>/<run>/   a run: its manifest, findings.json, timeline.jsonl, …
    reports/.staging/           runs being executed: never read
    reports/_review/            what ``review`` writes (no incident id can start with '_')

Every folder directly under an incident folder is listed as a run, whatever state it is in:
a run missing files, with an unreadable manifest or a ``findings.json`` of a newer schema
gets a :class:`RunSummary` whose ``problems`` say why, instead of breaking the index.

The cache (``_review/cache.json``) keys each run by a fingerprint of its folder: name, size,
mtime and ctime of the manifest and of every file. That is a superset of "the manifest's
mtime/size": a file tampered with after the last build changes its ctime (which no user-space
tool can set back), so the verification shown is never a stale "verified".
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import __version__
from ..evidence import MANIFEST, MANIFEST_SCHEMA, atomic_write_text, verify_run
from ..findings import FINDINGS_SCHEMA, SEVERITIES, rank
from ..redact import Redactor

SITE_DIR = "_review"
CACHE_NAME = "cache.json"
CACHE_FORMAT = 3
# Files every complete run folder holds (the notebook and its HTML are named after the runbook).
REQUIRED = ("findings.json", "parameters.json", "timeline.jsonl", "run.log", MANIFEST)
MAX_EVENTS = 5000  # per run, kept in the summary; the timeline page says when more were cut
_RUN_NAME = re.compile(r"^\d{8}T\d{6}Z-(?P<runbook>[a-z0-9][a-z0-9_-]*?)(?:-\d+)?$")


@dataclass
class RunSummary:
    """What the site shows about one run folder (JSON-able, cached between builds)."""

    rel: str  # "<incident>/<run>", relative to reports/
    incident: str
    name: str
    runbook: str = ""
    target: str = ""
    app: str = ""
    scenario: str = ""
    started_at: str = ""
    finished_at: str = ""
    status: str = "unknown"
    severity: str = "unknown"
    exit_code: int | None = None
    escalation: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    plan_digest: str = ""
    apply_outcome: str = ""
    error: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    events_dropped: int = 0
    notebook_html: str = ""
    notebook: str = ""
    charts: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # which of REQUIRED exist
    verified: bool = False
    verify_problems: list[str] = field(default_factory=list)
    verify_brief: list[str] = field(default_factory=list)  # "modified findings.json", …
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)  # why the run could not be read fully
    facts: dict[str, Any] = field(default_factory=dict)  # operator, tool version, git commit

    @property
    def readable(self) -> bool:
        return not self.problems

    @property
    def sort_time(self) -> str:
        return self.started_at or self.name

    @property
    def escalation_level(self) -> int:
        try:
            return int(self.escalation.get("level") or 0)
        except (TypeError, ValueError):
            return 0

    def to_dict(self) -> dict[str, Any]:
        # Shallow: every field is already JSON-able (asdict's deep copy was a third of a build).
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSummary":
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


_FIELDS = tuple(f.name for f in fields(RunSummary))


def sev_rank(severity: str) -> int:
    """Rank of a severity; anything this tool does not know counts as ``unknown``."""
    return rank(severity) if severity in SEVERITIES else rank("unknown")


def badness(run: RunSummary) -> tuple[int, int, int]:
    """Sort key, larger is worse: severity (``unknown`` — something could not be checked —
    as bad as ``critical``: blind is not green), then a run that did not complete, then
    escalation."""
    sev = "critical" if run.severity == "unknown" else run.severity
    return (sev_rank(sev), int(run.status != "ok"), run.escalation_level)


# --------------------------------------------------------------------------- reading one run
def _read_json(path: Path, what: str, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{what} is unreadable: {_short(exc)}")
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)


def _finding(raw: Any) -> dict[str, Any]:
    """A finding reduced to what the site shows, every text field a string."""
    if not isinstance(raw, dict):
        return {"id": "", "severity": "unknown", "title": _text(raw), "detail": "", "evidence": []}
    evidence = raw.get("evidence")
    if not isinstance(evidence, list):
        evidence = [] if evidence in (None, "") else [evidence]
    out: dict[str, Any] = {
        "id": _text(raw.get("id")), "severity": _text(raw.get("severity")) or "unknown",
        "title": _text(raw.get("title")), "detail": _text(raw.get("detail")),
        "evidence": [_text(e) for e in evidence],
    }
    for key in ("runbook", "first_seen", "last_seen", "ts", "source"):
        if raw.get(key) not in (None, ""):
            out[key] = _text(raw.get(key))
    if isinstance(raw.get("metrics"), dict):
        out["metrics"] = raw["metrics"]
    return out


def _action(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {"id": "", "title": _text(raw), "command": "", "status": "planned", "kind": ""}
    out = {k: _text(raw.get(k)) for k in ("id", "kind", "title", "command", "reason")}
    out["status"] = _text(raw.get("status")) or "planned"
    if raw.get("result") is not None:
        out["result"] = _text(raw.get("result"))[:500]
    return out


def _events(path: Path, summary: RunSummary) -> None:
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        summary.problems.append(f"timeline.jsonl is unreadable: {_short(exc)}")
        return
    bad = 0
    with fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(ev, dict):
                bad += 1
                continue
            if len(summary.events) >= MAX_EVENTS:
                summary.events_dropped += 1
                continue
            summary.events.append({k: ev[k] if k == "duration_ms" else _text(ev.get(k))
                                   for k in ("ts", "source", "operation", "target", "outcome",
                                             "duration_ms") if k in ev})
    if bad:
        summary.problems.append(f"timeline.jsonl has {bad} line(s) that are not JSON events")


def load_run(folder: Path, reports: Path) -> RunSummary:
    """Read one run folder: facts, findings, timeline, and its verification against the manifest.

    Never raises for what is in the folder: every problem lands in ``problems`` (reading) or
    ``verify_problems`` (integrity).
    """
    rel = folder.relative_to(reports).as_posix()
    s = RunSummary(rel=rel, incident=folder.parent.name, name=folder.name)
    m = _RUN_NAME.match(folder.name)
    if m:
        s.runbook = m.group("runbook")
    try:
        present = {p.name for p in folder.iterdir()}
    except OSError as exc:
        s.problems.append(f"run folder cannot be listed: {_short(exc)}")
        return s
    s.present = [n for n in REQUIRED if n in present]
    if not present & {MANIFEST, "findings.json", "parameters.json"}:
        s.problems.append("not a run folder: no EVIDENCE_MANIFEST.json, findings.json or "
                          "parameters.json")
        return _verify(s, folder)

    manifest = _read_json(folder / MANIFEST, MANIFEST, s.problems)
    facts: dict[str, Any] = {}
    if manifest is not None:
        if not isinstance(manifest, dict):
            s.problems.append(f"{MANIFEST} is unreadable: not a JSON object")
        elif isinstance(manifest.get("schema"), int) and manifest["schema"] > MANIFEST_SCHEMA:
            s.problems.append(f"{MANIFEST} schema {manifest['schema']} is newer than this tool "
                              f"({MANIFEST_SCHEMA}); upgrade opslib to read it")
        elif isinstance(manifest.get("run"), dict):
            facts = manifest["run"]
    params = _read_json(folder / "parameters.json", "parameters.json", s.problems)
    findings = _read_json(folder / "findings.json", "findings.json", s.problems)
    if findings is not None and not isinstance(findings, dict):
        s.problems.append("findings.json is unreadable: not a JSON object")
        findings = None
    if findings is not None:
        schema = findings.get("schema")
        if not isinstance(schema, int):
            s.problems.append(f"findings.json has no valid schema number ({schema!r})")
            findings = None
        elif schema > FINDINGS_SCHEMA:
            s.problems.append(f"findings.json schema {schema} is newer than this tool "
                              f"({FINDINGS_SCHEMA}); upgrade opslib to read it")
            findings = None

    # Facts: findings.json first (what the run concluded), then the manifest, then parameters.
    sources = [d for d in (findings, facts, (params or {}) if isinstance(params, dict) else {})
               if isinstance(d, dict)]

    def pick(key: str) -> Any:
        return next((d[key] for d in sources if d.get(key) not in (None, "")), None)

    s.runbook = _text(pick("runbook")) or s.runbook
    s.target = _text(pick("target"))
    s.app = _text(pick("app")) or _text(((params or {}).get("parameters") or {}).get("app")
                                       if isinstance(params, dict) else "")
    s.scenario = _text(pick("scenario"))
    s.started_at = _text(pick("started_at"))
    s.finished_at = _text(pick("finished_at"))
    s.status = _text(pick("status")) or "unknown"
    code = pick("exit_code")
    s.exit_code = code if isinstance(code, int) else None
    s.facts = {k: _text(facts.get(k)) for k in ("operator", "tool_version", "git_commit",
                                                "python_version", "papermill_version")
               if facts.get(k)}
    if findings is not None:
        s.severity = _text(findings.get("severity")) or "unknown"
        esc = findings.get("escalation")
        s.escalation = {k: _text(v) if k != "level" else v for k, v in esc.items()} \
            if isinstance(esc, dict) else {}
        raw = findings.get("findings")
        s.findings = [_finding(f) for f in raw] if isinstance(raw, list) else []
        acts = findings.get("actions")
        s.actions = [_action(a) for a in acts] if isinstance(acts, list) else []
        s.plan_digest = _text(findings.get("plan_digest"))
        apply = findings.get("apply")
        s.apply_outcome = _text(apply.get("outcome")) if isinstance(apply, dict) else ""
        if isinstance(findings.get("metrics"), dict):
            s.metrics = findings["metrics"]
        err = findings.get("error")
        if isinstance(err, dict):
            s.error = {k: _text(v) for k, v in err.items()}
    missing = [n for n in REQUIRED if n not in present]
    if s.runbook:
        for suffix in (".ipynb", ".html"):
            if f"{s.runbook}{suffix}" in present:
                setattr(s, "notebook" if suffix == ".ipynb" else "notebook_html",
                        f"{s.runbook}{suffix}")
            else:
                missing.append(f"{s.runbook}{suffix}")
    if missing:
        s.problems.append("missing files: " + ", ".join(missing))
    charts = folder / "charts"
    if charts.is_dir():
        s.charts = sorted(p.name for p in charts.iterdir()
                          if p.suffix.lower() in (".png", ".svg") and p.is_file())
    _events(folder / "timeline.jsonl", s)

    return _verify(s, folder)


def _verify(s: RunSummary, folder: Path) -> RunSummary:
    v = verify_run(folder)
    s.verified, s.files_checked = v.ok, v.files_checked
    s.verify_problems = [str(p) for p in v.problems]
    s.verify_brief = [f"{p.kind} {p.path}" + (f": {p.detail}" if p.kind == "manifest" else "")
                      for p in v.problems]
    return s


# --------------------------------------------------------------------------- fingerprints
def fingerprint(folder: Path) -> str:
    """Digest of the folder's listing: every entry's path, type, size, mtime and ctime."""
    h = hashlib.blake2b(digest_size=16)
    stack = [(folder, "")]
    while stack:
        path, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            h.update(f"!{prefix}:{exc.errno}".encode())
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                h.update(f"?{prefix}{e.name}".encode())
                continue
            h.update(f"{prefix}{e.name}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0"
                     f"{st.st_ctime_ns}\n".encode("utf-8", "surrogateescape"))
            if e.is_dir(follow_symlinks=False):
                stack.append((Path(e.path), f"{prefix}{e.name}/"))
    return h.hexdigest()


# --------------------------------------------------------------------------- the whole tree
@dataclass
class Scan:
    """Every incident and run under reports/, and how much of it had to be re-read."""

    reports: Path
    runs: list[RunSummary]
    reread: int
    cached: int

    def incidents(self) -> dict[str, list[RunSummary]]:
        """Runs grouped by incident, newest run first, incidents with the newest run first."""
        groups: dict[str, list[RunSummary]] = {}
        for r in self.runs:
            groups.setdefault(r.incident, []).append(r)
        for runs in groups.values():
            runs.sort(key=lambda r: (r.sort_time, r.name), reverse=True)
        return dict(sorted(groups.items(), key=lambda kv: (kv[1][0].sort_time, kv[0]),
                           reverse=True))


def _subdirs(folder: Path, hidden: tuple[str, ...]) -> list[Path]:
    """Real sub-folders (no symlinks) whose names do not start with ``hidden``, sorted."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(Path(e.path) for e in entries
                  if e.is_dir(follow_symlinks=False) and not e.name.startswith(hidden))


def incident_dirs(reports: Path) -> list[Path]:
    """Incident folders: not hidden (``.staging``), not ours (``_review``)."""
    return _subdirs(reports, (".", "_"))


def run_dirs(incident: Path) -> list[Path]:
    return _subdirs(incident, (".",))


def cache_path(reports: Path) -> Path:
    return reports / SITE_DIR / CACHE_NAME


def load_cache(reports: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache_path(reports).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT \
            or data.get("tool") != __version__:
        return {}
    return data


def save_cache(reports: Path, data: dict[str, Any]) -> None:
    data = {**data, "format": CACHE_FORMAT, "tool": __version__}
    atomic_write_text(cache_path(reports), json.dumps(data, ensure_ascii=False,
                                                      separators=(",", ":"), default=str))


PARALLEL_MIN = 32  # runs to read before a process pool pays for itself


def _read_one(folder: Path, reports: Path, redactor: Redactor | None = None) -> RunSummary:
    try:
        summary = load_run(folder, reports)
    except OSError as exc:  # vanished or unreadable mid-read (another process)
        summary = RunSummary(rel=folder.relative_to(reports).as_posix(),
                             incident=folder.parent.name, name=folder.name,
                             problems=[f"run folder could not be read: {_short(exc)}"])
    return redact_summary(summary, redactor or Redactor.from_env())


def _read_many(folders: list[Path], reports: Path, redactor: Redactor) -> list[RunSummary]:
    """Read runs; many of them (a cold build) on every core, since hashing is the bulk."""
    workers = min(os.cpu_count() or 1, 8)
    if len(folders) < PARALLEL_MIN or workers < 2:
        return [_read_one(f, reports, redactor) for f in folders]
    from concurrent.futures import ProcessPoolExecutor

    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_read_one, folders, [reports] * len(folders),
                                 chunksize=max(1, len(folders) // (workers * 8))))
    except (OSError, RuntimeError):  # no processes to be had here: read them one by one
        return [_read_one(f, reports, redactor) for f in folders]


def scan(reports: Path, *, cache: dict[str, Any] | None = None,
         redactor: Redactor | None = None) -> tuple[Scan, dict[str, Any]]:
    """Summarise every run under ``reports``; reuse cached summaries of unchanged runs.

    Returns the scan and the new cache entries (``{rel: {"key", "summary"}}``).
    """
    redactor = redactor or Redactor.from_env()
    old = (cache or {}).get("runs") or {}
    new: dict[str, Any] = {}
    found: list[tuple[str, str, Path]] = []
    for inc in incident_dirs(reports):
        for folder in run_dirs(inc):
            found.append((folder.relative_to(reports).as_posix(), fingerprint(folder), folder))
    stale = [folder for rel, key, folder in found
             if not (old.get(rel) and old[rel].get("key") == key)]
    fresh = {s.rel: s for s in _read_many(stale, reports, redactor)}
    runs: list[RunSummary] = []
    for rel, key, folder in found:
        summary = fresh.get(rel) or RunSummary.from_dict(old[rel]["summary"])
        new[rel] = {"key": key, "summary": summary.to_dict()}
        runs.append(summary)
    return Scan(reports, runs, len(fresh), len(found) - len(fresh)), new


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                out.append(k)
            _strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)


def redact_summary(summary: RunSummary, redactor: Redactor) -> RunSummary:
    """A second line of defence: evidence is redacted when written, but a run made by an older
    tool or edited by hand must not leak through the site.

    Every string of the summary appears verbatim in one joined text, so if redacting that text
    changes nothing, no string needs it; only then is the per-string pass skipped.
    """
    data = summary.to_dict()
    strings: list[str] = []
    _strings(data, strings)
    blob = "\n".join(strings)
    if redactor.text(blob) == blob:
        return summary
    return RunSummary.from_dict(redactor.obj(data))


def read_run(path: Path) -> RunSummary:
    """One run folder anywhere (``compare`` and ``--check-replay`` take any path)."""
    path = Path(path)
    return redact_summary(load_run(path, path.parent.parent), Redactor.from_env())


__all__ = ["RunSummary", "Scan", "scan", "load_run", "read_run", "redact_summary", "fingerprint", "badness",
           "sev_rank", "SITE_DIR", "incident_dirs", "run_dirs", "load_cache", "save_cache"]
