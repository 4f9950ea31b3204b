"""`analyze`: the public entry point, and the merge of chunk results into a `LogReport`."""

from __future__ import annotations

import importlib
import itertools
import sys
import threading
from collections import Counter
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any

import numpy as np

from . import signals as S
from .chunks import MEASURES, ChunkResult, SigAcc
from .report import ERROR_RATE_CRITICAL, ERROR_RATE_WARNING, SEVERITY_RANK, LogReport, _iso, proxy_meaning
from .inputs import FORMATS, Source, json_entries, open_source, sniff
from .reference import ReferenceWorker
from ..times import parse_when

if TYPE_CHECKING:
    import pandas as pd

    from .engine import Worker

# log entries up to this many are analysed by `reference.ReferenceWorker`
SMALL_ENTRIES = 6_000  # below the measured crossover (~8,000 entries in a fresh process: bench/small_inputs.py)

# Signals that are routine client behaviour at a trickle (tokens expire, clients refresh):
# raised only when a single minute holds at least this many — a burst, not background.
NOISY_SIGNALS = {"jwt_expired": 10, "refresh_token_failures": 10}


def analyze(source: Any, *, fmt: str = "auto", since: Any = None, until: Any = None, examples: int = 3,
            top_templates: int = 20, workers: int | None = None) -> LogReport:
    """Analyse Fly.io logs: the seed's grep categories, incident signals, series and templates.

    Args:
        source: a path (``.gz`` read transparently), ``"-"`` for stdin, a binary file object,
            or an iterable of log entries (logs-API ``data[]`` items, their ``attributes``,
            or flat ``{"timestamp","message","level","instance","region"}`` dicts).
        fmt: ``auto``, ``fly-text``, ``fly-json``, ``ndjson``, ``bare`` or ``api``.
        since, until: keep lines with timestamps in ``[since, until)``; see :func:`opslib.times.parse_when`.
            Lines without a timestamp are kept (they cannot be placed in time).
        examples: example lines kept per signal.
        top_templates: how many message templates to list.
        workers: threads for the compiled kernels (default: up to 2 cores).

    Raises:
        ValueError: unknown ``fmt``, bad ``since``/``until``, or a source that holds no logs.
        OSError: the path cannot be read.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if examples < 0 or top_templates < 0:
        raise ValueError("examples and top_templates must be 0 or more")
    t_since, t_until = parse_when(since), parse_when(until)
    if t_since and t_until and t_since >= t_until:
        raise ValueError(f"--since ({_iso(t_since)}) must be before --until ({_iso(t_until)})")
    since_ms = int(t_since.timestamp() * 1000) if t_since else None
    until_ms = int(t_until.timestamp() * 1000) if t_until else None
    anchor = t_since or datetime(1970, 1, 1, tzinfo=UTC)
    anchor_day_ms = int(datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC).timestamp() * 1000)
    src = open_source(source)
    try:
        results, pool, used_fmt = _run(src, fmt, since_ms, until_ms, examples, anchor_day_ms, workers)
    finally:
        src.close()
    report = _assemble(src.name, used_fmt, results, pool, examples, top_templates, anchor_day_ms, t_since is not None)
    report.notes.extend(dict.fromkeys(src.problems))
    return report


def _run(src: Source, fmt: str, since_ms: int | None, until_ms: int | None, examples: int,
         anchor_day_ms: int, workers: int | None) -> tuple[list[ChunkResult], list[Any], str]:
    """Chunk results, the workers that made them and the format read. Up to SMALL_ENTRIES
    log entries (the runbooks' logs-API lines, a ``fly logs --json`` capture) are analysed by
    the plain-Python reference, which needs no compiled kernels; anything else by the engine."""
    head = None
    entries = src.entries
    if entries is None:
        head = src.stream.read(65536)
        fmt = sniff(head) if fmt == "auto" else fmt
    elif fmt == "auto":
        fmt = "api"
    if fmt in ("fly-json", "api"):
        items = iter(entries if entries is not None else json_entries(src.stream, head))
        first = list(itertools.islice(items, SMALL_ENTRIES + 1))
        if len(first) <= SMALL_ENTRIES:
            worker = ReferenceWorker(since_ms, until_ms, examples)
            return [worker.process(first)], [worker], fmt
        entries = itertools.chain(first, items)
    from . import engine  # loads numba and the compiled kernels (~0.3 s) ...
    engine.load_kernels()
    _import_pandas_meanwhile()  # ... before pandas' import starts competing for the GIL
    return engine.run(src.stream, entries, fmt, since_ms, until_ms, examples, anchor_day_ms, workers=workers,
                      problems=src.problems, head=head)


def _import_pandas_meanwhile() -> None:
    """Start importing pandas in a thread: it takes ~0.3 s and is needed only for the report,
    so on a large input it runs on the cores' spare time while the kernels (which release the
    GIL) work. `_assemble`'s own ``import pandas`` waits for it, or raises its error.
    """
    if "pandas" not in sys.modules:
        threading.Thread(target=_quiet_import, args=("pandas",), name="import-pandas").start()


def _quiet_import(name: str) -> None:
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the main thread's import raises it where it matters
        pass


def _assemble(name: str, fmt: str, results: list[ChunkResult], pool: list[Worker | ReferenceWorker], examples: int,
              top_templates: int, anchor_day_ms: int, anchored: bool) -> LogReport:
    import pandas as pd

    lines = sum(r.lines for r in results)
    parsed = sum(r.parsed for r in results)
    filtered = sum(r.filtered_out for r in results)
    cats = np.sum([w.categories() for w in pool], axis=0)
    categories = {"errors": int(cats[0]), "auth": int(cats[1]), "database": int(cats[2])}
    tmins = [r.ts_min for r in results if r.ts_min is not None]
    tmaxs = [r.ts_max for r in results if r.ts_max is not None]
    window = (pd.Timestamp(min(tmins), unit="ms", tz="UTC") if tmins else None,
              pd.Timestamp(max(tmaxs), unit="ms", tz="UTC") if tmaxs else None)

    # HTTP status mix
    status = np.sum([w.statuses() for w in pool], axis=0)
    codes = np.flatnonzero(status)
    responses = int(status.sum())
    status_mix = pd.DataFrame({"count": status[codes].astype(np.int64)}, index=pd.Index(codes, name="status"))
    status_mix["share"] = status_mix["count"] / responses if responses else 0.0
    by_class = {f"{k}xx": int(status[k * 100:(k + 1) * 100].sum()) for k in range(1, 6)}
    error_rate = by_class["5xx"] / responses if responses else 0.0
    http = {"responses": responses, "by_class": by_class, "error_rate": error_rate}

    per_minute = _per_minute(results)
    by_instance = _by_name([w.totals("instance") for w in pool], "instance")
    by_region = _by_name([w.totals("region") for w in pool], "region")

    # signals: merge per-chunk accumulators in stream order, then resolve cross-line events
    accs: dict[str, SigAcc] = {}
    events: list[S.Event] = []
    crashes: list[S.Event] = []
    for r in results:
        for sid, acc in r.signals.items():
            if sid in accs:
                accs[sid].merge(acc, examples)
            else:
                accs[sid] = acc
        events.extend(r.events)
        crashes.extend(r.crashes)
    first_line, seen = {}, 0  # each chunk's first line in the stream
    for r in sorted(results, key=lambda r: r.index):
        first_line[r.index] = seen
        seen += r.lines
    resolved, suppressed = S.resolve_events(events, lambda order: first_line[order[0]] + order[1])
    for sid, ev, details in resolved:
        detail = None
        if sid == "oom_kill" and details.get("process"):
            detail = f"process {details['process']}"
        elif sid.startswith("health_check") and details.get("port"):
            detail = f"port {details['port']}"
        accs.setdefault(sid, SigAcc()).add(ev.order, ev.ts, ev.instance, ev.region, ev.text, detail, examples)
        if sid == "oom_kill":
            crashes.append(ev)
    for ev, details in S.crash_loops(crashes):
        accs.setdefault("crash_loop", SigAcc()).add(ev.order, ev.ts, ev.instance, ev.region, ev.text,
                                                    f"{details['crashes']} crashes in {int(details['span_s'])}s",
                                                    examples)
    if "http_5xx" in accs:
        # 5xx lines are counted in the kernel; where and when come from the totals
        acc = accs["http_5xx"]
        acc.instances = Counter({k: int(v) for k, v in by_instance["http_5xx"].items() if v})
        acc.regions = Counter({k: int(v) for k, v in by_region["http_5xx"].items() if v})
        acc.minutes = Counter({int(ts.timestamp()): int(v) for ts, v in per_minute["http_5xx"].items() if v})
        acc.details = Counter({f"HTTP {int(c)}": int(status[c]) for c in codes if c >= 500})

    signals = [_signal_dict(sid, acc, error_rate) for sid, acc in accs.items() if acc.count]
    # most severe first; within a severity, in the order things happened (the first critical
    # signal is usually nearest the cause), then by volume
    signals.sort(key=lambda s: (SEVERITY_RANK[s["severity"]], s["first_seen"] or "~", -s["count"], s["id"]))
    per_minute = _with_signal_columns(per_minute, signals)
    instance_minute = _instance_minute(results)
    templates, other = _templates(pool, lines, top_templates)
    spikes = _spikes(per_minute)
    unparsed_examples = [t for _, t in sorted(x for r in results for x in r.unparsed_examples)][: max(examples, 5)]
    notes: list[str] = []
    if any(r.dated_by_anchor for r in results):
        day = datetime.fromtimestamp(anchor_day_ms / 1000, tz=UTC).date().isoformat()
        notes.append(f"lines with only HH:MM:SS (dashboard copies) were dated {day}"
                     + ("" if anchored else "; pass --since with the real date to place them"))
    if other:
        notes.append(f"{other:,} lines had templates beyond the template table and are not in the top list")
    return LogReport(
        source=name, format=fmt, lines_read=lines, parsed=parsed, unparsed=lines - parsed, filtered_out=filtered,
        window=window, categories=categories, signals=signals, per_minute=per_minute, by_instance=by_instance,
        by_region=by_region, instance_minute=instance_minute, status_mix=status_mix, http=http,
        templates=templates, spikes=spikes, unparsed_examples=unparsed_examples, suppressed=suppressed,
        other_templates=other, notes=notes,
    )


def _signal_dict(sid: str, acc: SigAcc, error_rate: float) -> dict[str, Any]:
    d = S.SIGNALS[sid]
    severity = d.severity
    if sid == "http_5xx":
        severity = "critical" if error_rate > ERROR_RATE_CRITICAL else "warning" if error_rate > ERROR_RATE_WARNING else "ok"
    elif sid in NOISY_SIGNALS and max(acc.minutes.values(), default=acc.count) < NOISY_SIGNALS[sid]:
        severity = "ok"  # a trickle of expired tokens is normal client behaviour
    out: dict[str, Any] = {
        "id": sid,
        "title": d.title,
        "runbook": d.runbook,
        "severity": severity,
        "count": acc.count,
        "first_seen": _iso(acc.first[1]) if acc.first and acc.first[1] is not None else None,
        "last_seen": _iso(acc.last[1]) if acc.last and acc.last[1] is not None else None,
        "instances": [k for k, _ in acc.instances.most_common() if k],
        "regions": [k for k, _ in acc.regions.most_common() if k],
        "examples": [t for _, t in sorted(acc.examples)],
        "details": dict(acc.details.most_common(10)),
        "per_minute": {_iso(k): v for k, v in sorted(acc.minutes.items())},
    }
    meaning = proxy_meaning(sid)
    if meaning:
        out["meaning"] = meaning
    if sid == "http_5xx":
        out["error_rate"] = error_rate
    return out


def _per_minute(results: list[ChunkResult]) -> pd.DataFrame:
    import pandas as pd
    keys = [r.minute_keys for r in results if r.minute_keys is not None]
    if not keys:
        return pd.DataFrame(columns=list(MEASURES), index=pd.DatetimeIndex([], tz="UTC", name="minute"), dtype="int64")
    k = np.concatenate(keys)
    c = np.concatenate([r.minute_counts for r in results if r.minute_counts is not None])
    df = pd.DataFrame(c, columns=list(MEASURES))
    df["minute"] = k
    df = df.groupby("minute").sum()
    lo, hi = int(df.index.min()), int(df.index.max())
    if hi - lo <= 200_000:
        df = df.reindex(range(lo, hi + 1), fill_value=0)
    df.index = pd.to_datetime(df.index.to_numpy() * 60, unit="s", utc=True)
    df.index.name = "minute"
    return df.astype("int64")


def _with_signal_columns(df: pd.DataFrame, signals: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd
    df = df.copy()
    for s in signals:
        col = pd.Series(0, index=df.index, dtype="int64")
        for iso, v in s["per_minute"].items():
            ts = pd.Timestamp(iso)
            if ts in col.index:
                col[ts] += v
        df[s["id"]] = col
    return df.astype("int64")


def _by_name(parts: list[dict[str, np.ndarray]], name: str) -> pd.DataFrame:
    import pandas as pd
    tot: dict[str, np.ndarray] = {}
    for p in parts:
        for k, v in p.items():
            tot[k] = tot[k] + v if k in tot else v.copy()
    if not tot:
        return pd.DataFrame(columns=list(MEASURES), index=pd.Index([], name=name), dtype="int64")
    df = pd.DataFrame.from_dict(tot, orient="index", columns=list(MEASURES)).astype("int64")
    df.index.name = name
    # busiest first, ties by name: the same order whatever order the names were met in
    return df.sort_index().sort_values("lines", ascending=False, kind="stable")


def _instance_minute(results: list[ChunkResult]) -> pd.DataFrame:
    import pandas as pd
    rows = [(m, inst, v[0], v[1]) for r in results for (m, inst, v) in r.inst_minute]
    df = pd.DataFrame(rows, columns=["minute", "instance", "lines", "errors"])
    if df.empty:
        return df.astype({"lines": "int64", "errors": "int64"})
    df = df.groupby(["minute", "instance"], as_index=False).sum()
    df["minute"] = pd.to_datetime(df["minute"] * 60, unit="s", utc=True)
    return df


def _templates(pool: list[Worker | ReferenceWorker], lines: int, top: int) -> tuple[pd.DataFrame, int]:
    import pandas as pd
    merged: dict[int, list[Any]] = {}
    other = 0
    for w in pool:
        other += w.other_templates()
        for h, (count, order, tmpl, example) in w.templates().items():
            m = merged.get(h)
            if m is None:
                merged[h] = [count, order, tmpl, example]
            else:
                m[0] += count
                if order < m[1]:
                    m[1:] = [order, tmpl, example]
    rows = sorted(merged.values(), key=lambda m: (-m[0], m[1]))[:top]
    df = pd.DataFrame([(m[2], m[0], m[3]) for m in rows], columns=["template", "count", "example"])
    df["count"] = df["count"].astype("int64")
    df.insert(2, "share", df["count"] / lines if lines else 0.0)
    return df, other


def _spikes(per_minute: pd.DataFrame, min_minutes: int = 10) -> pd.DataFrame:
    """Minutes where a series is far above its own median over the window."""
    import pandas as pd
    rows = []
    if len(per_minute) >= min_minutes:
        for col in per_minute.columns:
            if col == "lines":
                continue
            s = per_minute[col].astype(float)
            med = float(s.median())
            mad = float((s - med).abs().median())
            threshold = max(5.0, 3.0 * med, med + 6.0 * 1.4826 * mad)
            hit = s[s >= threshold]
            for ts, v in hit.items():
                rows.append((ts, col, int(v), med, (v / med) if med > 0 else float("inf")))
    df = pd.DataFrame(rows, columns=["minute", "series", "count", "baseline", "factor"])
    return df.sort_values(["minute", "series"]).reset_index(drop=True)


def summarize_counts(report: LogReport) -> Counter:
    """Signal id -> count (handy in tests and notebooks)."""
    return Counter({s["id"]: s["count"] for s in report.signals})


_WARM_SAMPLES: tuple[tuple[bytes | list, str], ...] = (
    (b"2024-05-28T12:00:00Z app[148ed193b95089] iad [info]GET /health 200 error 401\n"
     b"2024-05-28T12:00:01Z proxy[148ed193b95089] iad [error][PC01] instance refused connection\n",
     "auto"),
    (b'{"event":{"provider":"app"},"fly":{"app":{"instance":"148ed193b95089","name":"a"},'
     b'"region":"iad"},"log":{"level":"info"},"message":"query failed","timestamp":'
     b'"2024-05-28T12:00:00.123456789Z"}\n', "auto"),
    (b'{\n    "level": "info",\n    "instance": "148ed193b95089",\n    "message": "x",\n'
     b'    "region": "iad",\n    "timestamp": "2024-05-28T12:00:00Z"\n}\n', "auto"),
    (b"12:00:00 database connection error\nplain application line\n", "auto"),
    ([{"timestamp": "2024-05-28T12:00:00Z", "message": "auth failed", "level": "info",
       "instance": "148ed193b95089", "region": "iad"}], "api"),
)


def warm() -> None:
    """Compile the engine's kernels into numba's on-disk cache (``make setup`` calls this, and
    again when ``_kernel.py`` changes).

    Compiling costs ~45-60 s and, while LLVM works, more memory than any analysis; doing it
    once at set-up keeps both out of users' runs.
    """
    for sample, fmt in _WARM_SAMPLES:
        analyze(sample, fmt=fmt)
