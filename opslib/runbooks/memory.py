"""High Memory Usage (seed "Issue 3"): memory per machine over time, OOM kills, restarts, sizing.

``collect`` does all I/O: the machine list and each machine's events (Fly Machines API) and
the memory series (Prometheus), concurrently. The rest is pure: frames, findings, a chart and
the remediation plan (resize machines as ``machine.update`` actions).

Logs (Fly logs API) are read for the last ``log_window_minutes`` and, for each recent OOM
exit older than that, for a few minutes around it: the kernel's ``Out of memory: Killed
process`` line corroborates the event and says which process held how much memory; an OOM
kill in the logs with no OOM exit means a child process was killed while the machine ran on.

Memory in use is ``1 - mem_available / mem_total``: the kernel's page cache is reclaimable,
so a machine whose ``free`` memory is low but whose ``available`` memory is plenty is not
under pressure — the false alarm this runbook must not raise.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..actions import Action, machine_action
from ..assess import recent_logs
from ..charting import time_axis
from ..config import Target
from ..findings import Finding
from ..logscan import LogReport
from ..promql import MetricsData, queries
from ..reads import Read, gather, measured
from ..session import Session
from ..sources import fly
from ..sources import prometheus as prom
from ..sources.fly import machines_frame
from ..sources.fly_models import MachineEvent
from ..sources.fly_platform import LogWindow
from ..thresholds import classify
from ..times import iso, parse_duration

RANGE_QUERIES = ("memory_pct", "memory_used_incl_cache_pct")
INSTANT_QUERIES = ("memory_total_bytes", "oom_exits")
CLIMB_PCT_PER_H = 5.0  # a steady climb faster than this over the last hour looks like a leak
MEMORY_LADDER_MB = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
# Fly presets: shared-cpu-Nx has N CPUs and 256 MB per CPU by default, up to 2 GB per CPU;
# performance-Nx has 2 GB per CPU by default, up to 8 GB per CPU.
SHARED_PRESETS = (1, 2, 4, 8)
PERFORMANCE_PRESETS = (1, 2, 4, 8, 16)
MAX_MB_PER_CPU = {"shared": 2048, "performance": 8192}
# Logs around an OOM exit: the kernel line comes a moment before flyd records the exit.
OOM_SLICE_BEFORE = timedelta(minutes=2)
OOM_SLICE_AFTER = timedelta(minutes=1)
OOM_SLICES = 3  # the most recent OOM exits whose logs are read
MEMORY_SIGNALS = ("oom_kill", "app_out_of_memory")
_KILLED = re.compile(r"Killed process (\d+) \(([^)]*)\).*?anon-rss:(\d+)kB")


@dataclass(frozen=True)
class MemoryData(MetricsData):
    log_window_minutes: float = recent_logs.DEFAULT_WINDOW_MIN
    # (machine, exit time, read key) of the logs read around the most recent OOM exits
    oom_slices: tuple[tuple[str, datetime, str], ...] = ()

    machines = measured()  # list[Machine] | None

    @property
    def events(self) -> dict[str, tuple[MachineEvent, ...]]:
        """The events endpoint's answer per machine (where it answered)."""
        return {k.split(":", 1)[1]: r.value for k, r in self.readings.items()
                if k.startswith("events:") and r.measured}

    @property
    def events_errors(self) -> dict[str, Exception]:
        return {k.split(":", 1)[1]: r.error for k, r in self.readings.items()
                if k.startswith("events:") and r.failed}

    @property
    def metrics(self) -> dict[str, prom.QueryResult | Exception]:
        return prom.results(self.readings, RANGE_QUERIES + INSTANT_QUERIES)

    @property
    def oom_logs(self) -> list[tuple[str, datetime, LogWindow | None]]:
        """(machine, exit time, the logs around it) for the most recent OOM exits."""
        return [(mid, t, self.readings.value(key)) for mid, t, key in self.oom_slices]


def _oom_slice_reads(session: Session, data: MemoryData, max_pages: int
                     ) -> tuple[list[Read], list[tuple[str, datetime, str]]]:
    """Reads of the logs around each recent OOM exit that the recent window does not cover."""
    now = session.now()
    recent = now - timedelta(minutes=data.log_window_minutes)
    exits = exits_frame(_all_events(data), now, parse_duration(data.window))
    ooms = exits[exits["oom_killed"]].head(OOM_SLICES) if len(exits) else exits
    reads, slices = [], []
    span = (OOM_SLICE_BEFORE + OOM_SLICE_AFTER).total_seconds() / 60
    for i, r in enumerate(ooms.itertuples()):
        t = r.time.to_pydatetime()
        if t - OOM_SLICE_BEFORE >= recent:
            continue  # the recent window has these lines already
        key = f"oom-logs:{i}"
        reads.append(recent_logs.read(session, window_minutes=span, max_pages=max_pages,
                                      until=min(now, t + OOM_SLICE_AFTER), key=key,
                                      context=True))
        slices.append((r.machine, t, key))
    return reads, slices


def collect(session: Session, target: Target, *, window: str = "6h", step: str = "2m",
            rate: str = "5m", promql: dict[str, str] | None = None,
            events_limit: int = 50, log_window_minutes: float = recent_logs.DEFAULT_WINDOW_MIN,
            log_max_pages: int = recent_logs.DEFAULT_MAX_PAGES) -> MemoryData:
    """The machines, the memory series and the recent logs, concurrently; then each
    machine's events; then the logs around the most recent OOM exits. ``log_window_minutes``
    of 0 reads no logs.

    Raises:
        UsageError: a bad window, step, rate or promql override (before any call is made).
    """
    qs = queries(target.app, rate=rate, window=window, overrides=promql)
    now = session.now()
    reads = [Read("machines", "the app's machines and their sizes",
                  lambda api: api.list_machines(), fly.MACHINES),
             *prom.range_reads({n: qs[n] for n in RANGE_QUERIES}, now=now, window=window,
                               step=step, context=("memory_used_incl_cache_pct",)),
             *prom.instant_reads({n: qs[n] for n in INSTANT_QUERIES}, now=now)]
    reads += recent_logs.recent(session, log_window_minutes, log_max_pages)
    readings = gather(session, target, reads)
    machines = readings.value("machines") or []
    if machines:
        readings = readings | gather(session, target, [
            Read(f"events:{m.id}", f"events of machine {m.id}",
                 lambda api, mid=m.id: api.events(mid, limit=events_limit), fly.MACHINES)
            for m in machines if m.id])
    data = MemoryData(window, step, qs, readings, log_window_minutes)
    logs = readings.get("logs")
    if logs is not None and logs.measured and machines:
        slice_reads, slices = _oom_slice_reads(session, data, min(log_max_pages, 5))
        if slice_reads:
            data = MemoryData(window, step, qs, readings | gather(session, target, slice_reads),
                              log_window_minutes, tuple(slices))
    return data


# --------------------------------------------------------------------------- frames
def _result(data: MemoryData, name: str) -> prom.QueryResult | None:
    got = data.metrics.get(name)
    return got if isinstance(got, prom.QueryResult) else None


def usage_frame(result: prom.QueryResult | None) -> pd.DataFrame:
    """Tidy memory series: ``timestamp``, ``instance``, ``value`` (%), one row per sample."""
    cols = ["timestamp", "instance", "value"]
    if result is None or result.empty:
        return pd.DataFrame(columns=cols)
    df = result.frame.copy()
    if "instance" not in df.columns:
        df["instance"] = "(all)"
    return df[cols].dropna(subset=["value"]).reset_index(drop=True)


def _all_events(data: MemoryData) -> dict[str, tuple[MachineEvent, ...]]:
    """Each machine's events: the events endpoint, else those embedded in the machine list."""
    answered = data.events
    return {m.id: answered.get(m.id) or m.events for m in data.machines or []}


EXIT_COLUMNS = ["machine", "time", "exit_code", "oom_killed", "restart_count", "requested_stop",
                "source"]


def exits_frame(events: dict[str, tuple[MachineEvent, ...]], now: datetime,
                window_s: float) -> pd.DataFrame:
    """Exit events within the window, newest first."""
    rows = [{"machine": mid, "time": pd.Timestamp(ev.timestamp), "exit_code": ev.exit.exit_code,
             "oom_killed": ev.exit.oom_killed, "restart_count": ev.restart_count,
             "requested_stop": ev.exit.requested_stop, "source": ev.source}
            for mid, evs in events.items() for ev in evs
            if ev.exit is not None and ev.timestamp is not None
            and (now - ev.timestamp).total_seconds() <= window_s]
    df = pd.DataFrame(rows, columns=EXIT_COLUMNS)
    return df.sort_values("time", ascending=False).reset_index(drop=True) if len(df) else df


def exits_table(data: MemoryData, now: datetime) -> pd.DataFrame:
    """Every machine's exits in the window (OOM kills and restarts), newest first."""
    return exits_frame(_all_events(data), now, parse_duration(data.window))


SUMMARY_COLUMNS = ["machine", "region", "state", "group", "cpu_kind", "cpus", "memory_mb",
                   "current_pct", "peak_pct", "peak_mb", "climb_pct_per_h", "incl_cache_pct",
                   "oom_kills", "exits", "restart_count", "prom_oom", "status"]


def _climb(series: pd.DataFrame, now: datetime) -> float | None:
    """Steady climb in %/h: a least-squares line through the samples since the last restart
    (a drop of more than 20 points) or the last 3 h, whichever is shorter. None unless the
    line spans at least 45 min and fits well (R² ≥ 0.8): noise and daily waves are no leak."""
    recent = series[series["timestamp"] >= pd.Timestamp(now) - pd.Timedelta(hours=3)]
    vals = recent["value"].to_numpy()
    drops = [i for i in range(1, len(vals)) if vals[i] < vals[i - 1] - 20]
    if drops:
        recent = recent.iloc[drops[-1]:]
    if len(recent) < 5:
        return None
    x = (recent["timestamp"] - recent["timestamp"].iloc[0]).dt.total_seconds().to_numpy() / 3600
    y = recent["value"].to_numpy()
    if x[-1] < 0.75:
        return None
    xm, ym = x.mean(), y.mean()
    sxx, syy = ((x - xm) ** 2).sum(), ((y - ym) ** 2).sum()
    if not sxx or not syy:
        return 0.0 if sxx else None
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    r2 = slope * slope * sxx / syy
    return slope if r2 >= 0.8 else 0.0


def machine_summary(data: MemoryData, now: datetime,
                    limits: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """One row per machine: size, memory now / peak / trend, OOM kills and restarts."""
    window_s = parse_duration(data.window)
    usage = usage_frame(_result(data, "memory_pct"))
    cache = usage_frame(_result(data, "memory_used_incl_cache_pct"))
    oom = _result(data, "oom_exits")
    oom_by = ({r["instance"]: r["value"] for _, r in oom.frame.iterrows()}
              if oom is not None and not oom.empty and "instance" in oom.frame.columns else {})
    exits = exits_frame(_all_events(data), now, window_s)
    mdf = machines_frame(data.machines or [])
    groups = {m.id: m.process_group or "app" for m in data.machines or []}
    ids = list(mdf["id"]) + sorted(set(usage["instance"]) - set(mdf["id"]))
    stale_after = pd.Timedelta(seconds=max(2 * parse_duration(data.step), 300))
    rows = []
    for mid in ids:
        m = mdf[mdf["id"] == mid]
        mrow = m.iloc[0] if len(m) else None
        s = usage[usage["instance"] == mid].sort_values("timestamp")
        c = cache[cache["instance"] == mid].sort_values("timestamp")
        mem_mb = float(mrow["memory_mb"]) if mrow is not None and mrow["memory_mb"] == mrow["memory_mb"] \
            and mrow["memory_mb"] is not None else None
        # "now" only from a recent sample: a machine replaced hours ago has a last value too
        fresh = len(s) and s["timestamp"].iloc[-1] >= pd.Timestamp(now) - stale_after
        current = float(s["value"].iloc[-1]) if fresh else None
        peak = float(s["value"].max()) if len(s) else None
        mex = exits[exits["machine"] == mid]
        # a requested stop (auto-stop of an idle machine, `fly machine stop`) is not a restart
        unrequested = mex[~mex["requested_stop"].astype(bool) | mex["oom_killed"].astype(bool)]
        row = {
            "machine": mid,
            "region": mrow["region"] if mrow is not None else "",
            "state": mrow["state"] if mrow is not None else "(not in machine list)",
            "group": groups.get(mid, ""),
            "cpu_kind": mrow["cpu_kind"] if mrow is not None else "",
            "cpus": mrow["cpus"] if mrow is not None else None,
            "memory_mb": mem_mb,
            "current_pct": round(current, 1) if current is not None else None,
            "peak_pct": round(peak, 1) if peak is not None else None,
            "peak_mb": round(peak / 100 * mem_mb) if peak is not None and mem_mb else None,
            "climb_pct_per_h": (round(v, 1) if (v := _climb(s, now)) is not None else None),
            "incl_cache_pct": round(float(c["value"].iloc[-1]), 1) if len(c) else None,
            "oom_kills": int(mex["oom_killed"].sum()),
            "exits": len(unrequested),
            "restart_count": int(mex["restart_count"].max()) if len(mex) else 0,
            "prom_oom": oom_by.get(mid),
        }
        row["status"] = "critical" if row["oom_kills"] else classify(current, limits["memory_pct"])
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- sizing
def _int(value: Any, default: int = 1) -> int:
    """An int from a frame cell that may be None or NaN."""
    try:
        return int(value) if value is not None and value == value else default
    except (TypeError, ValueError):
        return default


def preset_name(cpu_kind: str, cpus: int) -> str:
    """Fly's VM size name: ``shared-cpu-2x``, ``performance-4x``."""
    return f"shared-cpu-{cpus}x" if cpu_kind == "shared" else f"{cpu_kind}-{cpus}x"


def next_size(cpu_kind: str, cpus: int, memory_mb: float, peak_mb: float | None,
              warn_pct: float, oom: bool) -> dict[str, Any]:
    """The next size up: enough memory to keep the observed peak under the warning threshold.

    When the machine was OOM-killed its real need is unknown (it hit the ceiling), so at
    least double. Uses the seed's ``fly scale vm <preset>`` when the next preset up brings
    exactly that memory, ``fly scale memory <MB>`` otherwise. Returns ``{"memory_mb",
    "needed_mb", "guest", "vm_size" | None}``.
    """
    cpu_kind = kind_now = cpu_kind or "shared"
    cpus = _int(cpus)
    needed = (peak_mb or memory_mb) / (warn_pct / 100.0)
    if oom:
        needed = max(needed, memory_mb * 2)
    target = next((s for s in MEMORY_LADDER_MB if s >= needed and s > memory_mb),
                  MEMORY_LADDER_MB[-1])
    per_default = 256 if cpu_kind == "shared" else 2048
    presets = SHARED_PRESETS if cpu_kind == "shared" else PERFORMANCE_PRESETS
    up = next((n for n in presets if n > cpus), None)
    vm_size = None
    new_cpus = cpus
    if up is not None and up == cpus * 2 and up * per_default == target:
        vm_size, new_cpus = preset_name(cpu_kind, up), up
    else:
        # memory per CPU is capped; add CPUs (the next preset) when the memory needs them
        while target > new_cpus * MAX_MB_PER_CPU.get(cpu_kind, 2048):
            bigger = next((n for n in presets if n > new_cpus), None)
            if bigger is None:
                break
            new_cpus = bigger
        if target > new_cpus * MAX_MB_PER_CPU.get(cpu_kind, 2048) and cpu_kind == "shared":
            # past shared-cpu-8x's 16 GB Fly refuses the size: the next step is performance
            cpu_kind = "performance"
            new_cpus = next((n for n in PERFORMANCE_PRESETS
                             if n * MAX_MB_PER_CPU["performance"] >= target),
                            PERFORMANCE_PRESETS[-1])
        largest = new_cpus * MAX_MB_PER_CPU.get(cpu_kind, 2048)
        target = min(target, largest)  # the most memory Fly allows for these CPUs
        if cpu_kind == "performance":
            target = max(target, new_cpus * 2048)  # and the least (2 GB per performance CPU)
        if new_cpus != cpus or cpu_kind != kind_now:
            vm_size = preset_name(cpu_kind, new_cpus)
    return {"memory_mb": int(target), "needed_mb": int(math.ceil(needed)), "vm_size": vm_size,
            "guest": {"cpu_kind": cpu_kind, "cpus": new_cpus, "memory_mb": int(target)}}


def scale_command(size: dict[str, Any], app: str) -> str:
    """The ``fly scale …`` command an engineer would type for ``size`` (see :func:`next_size`)."""
    vm = size.get("vm_size")
    if vm and size["guest"]["memory_mb"] == size["guest"]["cpus"] * (
            256 if size["guest"]["cpu_kind"] == "shared" else 2048):
        return f"fly scale vm {vm} -a {app}"
    if vm:
        return f"fly scale vm {vm} --vm-memory {size['memory_mb']} -a {app}"
    return f"fly scale memory {size['memory_mb']} -a {app}"


# --------------------------------------------------------------------------- findings
def _mb(v: Any) -> str:
    return f"{int(v)} MB" if v is not None and v == v else "? MB"


def assess(data: MemoryData, summary: pd.DataFrame, app: str,
           limits: dict[str, tuple[float, float]], now: datetime) -> list[Finding]:
    """Findings: memory per machine, OOM kills, restarts, a leak-like climb, page cache."""
    out: list[Finding] = []
    warn, crit = limits["memory_pct"]
    if data.readings["machines"].failed:
        e = data.readings["machines"].error
        out.append(Finding("machines-error", "critical" if e.kind == "not_found" else "unknown",
                           f"could not list machines: {e.message}", e.hint, source="fly-machines"))
    for mid, e in data.events_errors.items():
        out.append(Finding(f"events-error-{mid}", "unknown",
                           f"could not read events of machine {mid}: {e.kind}",
                           f"{e.message}. {e.hint} OOM kills are read from the events embedded "
                           "in the machine list instead.", source="fly-machines"))
    mem = data.metrics.get("memory_pct")
    if isinstance(mem, Exception):
        out.append(prom.error_finding("memory_pct", mem, what="memory usage"))
    elif isinstance(mem, prom.QueryResult) and mem.empty:
        out.append(prom.no_data_finding(mem, app=app, window=data.window, what="memory usage"))
    for name in ("memory_used_incl_cache_pct", "memory_total_bytes", "oom_exits"):
        got = data.metrics.get(name)
        if isinstance(got, Exception):
            out.append(Finding(f"prometheus-error-{name.replace('_', '-')}", "info",
                               f"could not read {name} from Prometheus: {got.kind}",
                               f"{got.message}. {got.hint}".strip(), source="prometheus"))
    if summary.empty:
        return out

    high = summary[summary["current_pct"].notna() & (summary["current_pct"] > warn)]
    if len(high):
        sev = "critical" if (high["current_pct"] > crit).any() else "warning"
        limit = crit if sev == "critical" else warn
        over = high[high["current_pct"] > limit].sort_values("current_pct", ascending=False)
        worst = over.iloc[0]
        out.append(Finding(
            "memory-high", sev,
            f"{len(over)}/{len(summary)} machine(s) above {limit:.0f}% memory: {worst.machine} "
            f"at {worst.current_pct:.0f}% of {_mb(worst.memory_mb)}",
            f"thresholds: warning > {warn:.0f}%, critical > {crit:.0f}% (memory in use = "
            "1 - mem_available / mem_total, page cache excluded)",
            [f"{r.machine} ({r.region}): now {r.current_pct:.1f}%, peak {r.peak_pct:.1f}% "
             f"over {data.window}" for r in high.itertuples()], source="prometheus"))

    ooms = summary[summary["oom_kills"] > 0]
    prom_only = summary[(summary["oom_kills"] == 0) & (summary["prom_oom"].fillna(0) > 0)]
    if len(ooms) or len(prom_only):
        exits = exits_frame(_all_events(data), now, parse_duration(data.window))
        oom_exits = exits[exits["oom_killed"]]
        total = int(ooms["oom_kills"].sum())
        evidence = [f"{r.machine}: exit_code {r.exit_code}, oom_killed at {iso(r.time)}, "
                    f"restart_count {r.restart_count}" for r in oom_exits.itertuples()]
        evidence += [f"{r.machine}: fly_instance_exit_oom = {r.prom_oom:g}"
                     for r in summary[summary["prom_oom"].fillna(0) > 0].itertuples()]
        title = (f"{total} OOM kill(s) in the last {data.window} on "
                 f"{', '.join(ooms['machine'])}" if total else
                 f"Prometheus reports an OOM exit on {', '.join(prom_only['machine'])}")
        out.append(Finding(
            "memory-oom", "critical", title,
            "the kernel killed the app for using all of the machine's memory (exit code 137, "
            "oom_killed=true); flyd restarted it, dropping in-flight requests", evidence,
            source="fly-machines"))

    restarted = summary[summary["exits"] > 0]
    if len(restarted):
        out.append(Finding(
            "memory-restarts", "warning",
            f"{int(restarted['exits'].sum())} machine exit(s)/restart(s) in the last "
            f"{data.window} on {', '.join(restarted['machine'])}",
            "each restart drops connections and cold-starts the app",
            [f"{r.machine}: {r.exits} exit(s), restart_count {r.restart_count}"
             for r in restarted.itertuples()], source="fly-machines"))

    climbing = summary[summary["climb_pct_per_h"].fillna(0) > CLIMB_PCT_PER_H]
    for r in climbing.itertuples():
        eta = ((100 - r.current_pct) / r.climb_pct_per_h * 60) if r.current_pct is not None else None
        out.append(Finding(
            f"memory-climbing-{r.machine}", "warning",
            f"memory of {r.machine} climbing {r.climb_pct_per_h:+.0f} %/h"
            + (f": full in ~{eta:.0f} min at this rate" if eta is not None and eta >= 0 else ""),
            "a steady climb that only a restart resets looks like a leak: more memory buys "
            "time, the fix is in the app", source="prometheus"))

    cache_only = summary[(summary["incl_cache_pct"].fillna(0) > warn)
                         & (summary["current_pct"].notna()) & (summary["current_pct"] <= warn)]
    if len(cache_only):
        out.append(Finding(
            "memory-page-cache", "info",
            f"{len(cache_only)} machine(s) look full counting page cache, but memory is available",
            "`free` and dashboards that count cache as used show these machines above "
            f"{warn:.0f}%, but the kernel can reclaim page cache at any time: memory in use "
            "(mem_available) is normal. Not memory pressure; nothing to do.",
            [f"{r.machine}: {r.incl_cache_pct:.0f}% counting cache, {r.current_pct:.0f}% in use "
             f"({_mb((100 - r.current_pct) / 100 * r.memory_mb if r.memory_mb else None)} "
             "available)" for r in cache_only.itertuples()], source="prometheus"))

    measured = summary[summary["current_pct"].notna()]
    if len(measured) and not len(high) and not len(ooms) and not len(prom_only):
        out.insert(0, Finding(
            "memory-ok", "ok",
            f"memory in use at most {measured['current_pct'].max():.0f}% now "
            f"(peak {measured['peak_pct'].max():.0f}%) on {len(measured)} machine(s); no OOM "
            f"kills in the last {data.window}",
            f"thresholds: warning > {warn:.0f}%, critical > {crit:.0f}%", source="prometheus"))
    sizing = sizing_advice(summary, app, limits)
    if sizing is not None:
        out.append(sizing)
    return out


def _needs_more(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["status"].isin(["critical", "warning"]) & summary["memory_mb"].notna()]


def sizing_advice(summary: pd.DataFrame, app: str,
                  limits: dict[str, tuple[float, float]]) -> Finding | None:
    """Current size, peak usage and the next size up for the machines under pressure."""
    hot = _needs_more(summary)
    if hot.empty:
        return None
    warn = limits["memory_pct"][0]
    lines = []
    for r in hot.itertuples():
        size = next_size(r.cpu_kind, r.cpus, r.memory_mb, r.peak_mb, warn, r.oom_kills > 0)
        lines.append(f"{r.machine}: {preset_name(r.cpu_kind, _int(r.cpus))} {_mb(r.memory_mb)}, peak "
                     f"{_mb(r.peak_mb)} ({r.peak_pct:.0f}%)"
                     + (" and OOM-killed" if r.oom_kills else "")
                     + f" → needs ≥ {size['needed_mb']} MB → {size['memory_mb']} MB "
                     f"(`{scale_command(size, app)}`)")
    all_hot = len(hot) == len(summary[summary["current_pct"].notna()])
    leak = (hot["climb_pct_per_h"].fillna(0) > CLIMB_PCT_PER_H).any()
    detail = ("next size up keeps the observed peak under the warning threshold "
              f"({warn:.0f}%); after an OOM kill the real need is unknown, so at least double. ")
    if all_hot:
        detail += (f"Every machine is under pressure: the load is spread, so more machines "
                   f"(`fly scale count 3 -a {app}`) help as much as bigger ones. ")
    else:
        detail += ("Only some machines are under pressure: adding machines (`fly scale count`) "
                   "does not help a machine that leaks. ")
    if leak:
        detail += "The steady climb looks like a leak: resizing buys time; fix the app."
    return Finding("memory-sizing", "info", "sizing advice: " + lines[0].split(" → ")[-1]
                   if len(lines) == 1 else f"sizing advice for {len(lines)} machines",
                   detail.strip(), lines)


# --------------------------------------------------------------------------- logs
def kills_in(report: LogReport) -> list[dict[str, Any]]:
    """The kernel's OOM kills in a report: ``process``, ``pid`` and ``anon_rss_mb`` (the
    memory the killed process held) from the example lines of the ``oom_kill`` signal."""
    sig = report.signal("oom_kill") or {}
    out = []
    for line in sig.get("examples", []):
        m = _KILLED.search(line)
        if m:
            out.append({"pid": int(m.group(1)), "process": m.group(2),
                        "anon_rss_mb": round(int(m.group(3)) / 1024)})
    return out


OOM_LOG_COLUMNS = ["machine", "exit_time", "kernel_line", "process", "pid", "anon_rss_mb",
                   "memory_mb", "lines_read"]


def oom_logs_table(data: MemoryData) -> pd.DataFrame:
    """Each recent OOM exit older than the recent log window, with what the logs around it
    say: whether the kernel's ``Out of memory: Killed process`` line is there, which process
    it killed and how much memory that process held."""
    sizes = {m.id: m.guest.memory_mb for m in data.machines or []}
    rows = []
    for mid, t, got in data.oom_logs:
        report = recent_logs.analyze(got or LogWindow())
        on_machine = mid in ((report.signal("oom_kill") or {}).get("instances") or [])
        kill = kills_in(report)[0] if on_machine and kills_in(report) else {}
        rows.append({"machine": mid, "exit_time": pd.Timestamp(t), "kernel_line": on_machine,
                     "process": kill.get("process"), "pid": kill.get("pid"),
                     "anon_rss_mb": kill.get("anon_rss_mb"), "memory_mb": sizes.get(mid),
                     "lines_read": report.lines_read})
    return pd.DataFrame(rows, columns=OOM_LOG_COLUMNS)


def assess_logs(data: MemoryData, report: LogReport | None, summary: pd.DataFrame) -> list[Finding]:
    """What the logs add to the events: the kernel confirming each OOM exit (and naming the
    process), OOM kills with no OOM exit (a child process killed, the machine ran on), and a
    runtime that hit its own heap limit (more machine memory alone does not help)."""
    out: list[Finding] = []
    table = oom_logs_table(data)
    if len(table):
        seen = table[table["kernel_line"]]
        evidence = [f"{r.machine} exit at {iso(r.exit_time)}: "
                    + (f"kernel killed {r.process} (pid {r.pid}) holding {r.anon_rss_mb} MB "
                       f"anon-rss of {_mb(r.memory_mb)}" if r.kernel_line else
                       f"no kernel OOM line in {r.lines_read} log lines around it")
                    for r in table.itertuples()]
        if len(seen) == len(table):
            title = (f"the kernel's log confirms {len(seen)} OOM kill(s): "
                     + ", ".join(sorted({f"{r.process} on {r.machine}" for r in seen.itertuples()})))
            detail = ("`Out of memory: Killed process` at the time of each OOM exit: the app's "
                      "main process used the machine's memory up (anon-rss is the memory it held)")
        else:
            title = (f"the kernel's OOM line is in the logs for {len(seen)} of {len(table)} "
                     "OOM exit(s)")
            detail = ("no kernel line around the other exits: their logs may not have been "
                      "shipped (the machine died first) or have aged out (Fly keeps ~7 days)")
        out.append(Finding("memory-oom-logs", "info", title, detail, evidence, source="logs"))
    if report is None:
        return out
    oom = report.signal("oom_kill")
    if oom is not None:
        with_exit = set(summary[(summary["oom_kills"] > 0)
                                | (summary["prom_oom"].fillna(0) > 0)]["machine"])
        unrecorded = [m for m in oom.get("instances", []) if m not in with_exit]
        if unrecorded:
            kills = kills_in(report)
            out.append(Finding(
                "memory-oom-unrecorded", "critical",
                f"the kernel OOM-killed a process on {', '.join(unrecorded)} with no OOM exit "
                "of the machine",
                "the logs show `Out of memory: Killed process` but flyd recorded no OOM exit: "
                "a child process (a worker, a headless browser, an image converter) was killed "
                "while the machine ran on, or the events could not be read. Requests it served "
                "failed; size for the peak of all processes together.",
                recent_logs.signal_evidence(oom) + [f"killed {k['process']} (pid {k['pid']}), "
                                                f"{k['anon_rss_mb']} MB anon-rss" for k in kills],
                source="logs"))
    heap = report.signal("app_out_of_memory")
    if heap is not None and heap["severity"] != "ok":
        out.append(Finding(
            "memory-runtime-heap", "warning",
            f"the runtime ran out of its own heap limit {heap['count']}x on "
            f"{', '.join(heap.get('instances', [])) or 'the app'}",
            "`JavaScript heap out of memory` / `MemoryError` / `OutOfMemoryError`: the "
            "language runtime's heap limit was hit, not necessarily the machine's memory. A "
            "bigger machine helps only with a bigger heap limit (e.g. NODE_OPTIONS="
            "--max-old-space-size at ~75% of memory_mb); a leak needs fixing either way.",
            recent_logs.signal_evidence(heap), source="logs"))
    return out



# --------------------------------------------------------------------------- plan
def plan_actions(data: MemoryData, summary: pd.DataFrame, app: str,
                 limits: dict[str, tuple[float, float]]) -> list[Action]:
    """Resize every machine of each affected process group to the next size up.

    ``fly scale vm`` / ``fly scale memory`` resize all machines of the app; opslib applies the
    same change machine by machine (``machine.update`` with a ``guest`` patch), and the plan
    records each machine's current size and ``updated_at`` so a stale plan is refused.
    """
    hot = _needs_more(summary)
    if hot.empty:
        return []
    warn = limits["memory_pct"][0]
    by_id = {m.id: m for m in data.machines or []}
    actions: list[Action] = []
    for group, rows in hot.groupby("group", sort=True):
        # one size for the group: the largest any of its hot machines needs
        sizes = [next_size(r.cpu_kind, r.cpus, r.memory_mb, r.peak_mb, warn, r.oom_kills > 0)
                 for r in rows.itertuples()]
        size = max(sizes, key=lambda s: (s["memory_mb"], s["guest"]["cpus"]))
        command = scale_command(size, app)
        members = summary[(summary["group"] == group) & summary["memory_mb"].notna()
                          & (summary["memory_mb"] < size["memory_mb"])]
        for r in members.itertuples():
            m = by_id.get(r.machine)
            per_machine = (f"fly machine update {r.machine} --vm-memory {size['memory_mb']}"
                           + (f" --vm-cpus {size['guest']['cpus']}"
                              if size["guest"]["cpus"] != _int(r.cpus) else "") + f" -a {app}")
            guest = dict((m.config.get("guest") if m else None) or {})
            actions.append(machine_action(
                "machine.update", app, r.machine, id=f"resize-{r.machine}", shown=command,
                config_patch={"guest": size["guest"]},
                title=(f"resize {r.machine} ({r.region}) from "
                       f"{preset_name(r.cpu_kind, _int(r.cpus))} {_mb(r.memory_mb)} to "
                       f"{preset_name(size['guest']['cpu_kind'], size['guest']['cpus'])} "
                       f"{size['memory_mb']} MB"),
                basis={"guest": guest, "state": r.state, "updated_at": m.updated_at if m else ""},
                reason=(f"`{command}` resizes every machine of the app; opslib applies it to "
                        f"{r.machine} alone, as `{per_machine}`. The machine restarts with the new size.")))
    return actions


# --------------------------------------------------------------------------- chart
_PALETTE = ("#1565c0", "#6a1b9a", "#00838f", "#2e7d32", "#ad1457", "#4e342e")


def memory_chart(data: MemoryData, summary: pd.DataFrame, now: datetime,
                 limits: dict[str, tuple[float, float]]) -> Figure:
    """Memory in use per machine over the window, thresholds, OOM kills marked; page cache
    included, dashed, for comparison."""
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    usage = usage_frame(_result(data, "memory_pct"))
    cache = usage_frame(_result(data, "memory_used_incl_cache_pct"))
    exits = exits_frame(_all_events(data), now, parse_duration(data.window))
    for i, mid in enumerate(sorted(set(usage["instance"]))):
        colour = _PALETTE[i % len(_PALETTE)]
        s = usage[usage["instance"] == mid]
        ax.plot(s["timestamp"], s["value"], color=colour, linewidth=1.6, label=f"{mid} in use")
        c = cache[cache["instance"] == mid]
        if len(c):
            ax.plot(c["timestamp"], c["value"], color=colour, linewidth=0.8, linestyle=":",
                    label=f"{mid} incl. page cache")
        for t in exits[(exits["machine"] == mid) & exits["oom_killed"]]["time"]:
            ax.axvline(t, color="#c62828", linewidth=1, alpha=0.7)
            ax.annotate("OOM", (t, 101), color="#c62828", fontsize=7, ha="center",
                        annotation_clip=False)
    warn, crit = limits["memory_pct"]
    ax.axhline(warn, color="#ef6c00", linestyle="--", linewidth=1, label=f"warning {warn:.0f}%")
    ax.axhline(crit, color="#c62828", linestyle="--", linewidth=1, label=f"critical {crit:.0f}%")
    ax.set_ylim(0, 105)
    ax.set_ylabel("memory (%)")
    ax.set_title(f"Memory per machine, last {data.window}")
    if usage.empty:
        ax.text(0.5, 0.5, "no memory data (see findings)", transform=ax.transAxes, ha="center")
    ax.legend(loc="lower left", fontsize=7, ncol=2)
    time_axis(ax)
    return fig

