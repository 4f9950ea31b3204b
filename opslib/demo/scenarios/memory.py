"""Demo scenarios of the memory runbook: an OOM-killing leak, and a page-cache false alarm."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Callable

from ...promql import queries
from ..prom import add_prometheus, instance_labels
from ..world import APP, ENV, IMAGE, REF_NOW, World, ago, json_response, machine, ms
from ...times import iso
from . import _applogs as applogs

A, B = "148ed193b95089", "3d8d9e1fe67e89"
NOW_S = REF_NOW.timestamp()
WINDOW, STEP = "6h", "2m"


def wobble(t: float, amp: float, period_s: float = 1500.0, phase: float = 0.0) -> float:
    """Deterministic small variation, so series look measured rather than drawn."""
    return amp * math.sin(2 * math.pi * t / period_s + phase)


def exit_event(at: datetime, *, restarts: int, capitalised: bool, oom: bool = True,
               code: int = 137) -> dict:
    """An exit event as flyd reports it; old flyd puts the exit under ``MonitorEvent``."""
    ee = {"exit_code": code, "guest_exit_code": 0, "guest_signal": -1, "oom_killed": oom,
          "requested_stop": False, "restarting": True, "signal": -1, "exited_at": iso(at)}
    request: dict[str, Any] = ({"MonitorEvent": {"exit_event": ee}} if capitalised
                               else {"exit_event": ee})
    request["restart_count"] = restarts
    return {"id": f"01JD7Q{ms(at):X}", "type": "exit", "status": "stopped", "source": "flyd",
            "timestamp": ms(at), "request": request}


def start_event(at: datetime, source: str = "flyd") -> dict:
    return {"id": f"01JD7S{ms(at):X}", "type": "start", "status": "started", "source": source,
            "timestamp": ms(at)}


def launch_event(at: datetime) -> dict:
    return {"id": f"01JD7L{ms(at):X}", "type": "launch", "status": "created", "source": "user",
            "timestamp": ms(at)}


def _memory_collect(session, target):  # noqa: ANN001
    from ...runbooks import memory

    return memory.collect(session, target, window=WINDOW, step=STEP, log_window_minutes=30)


MACHINES_AB = [(A, "iad"), (B, "ams")]


def oom_script(mid: str, region: str, exit_at: datetime, *, anon_rss_kb: int,
               total_vm_kb: int, uptime_s: float) -> list[applogs.Entry]:
    """An OOM kill as the kernel, Fly's init, flyd and the proxy print it, then the restart.
    ``exit_at`` is the exit event's time: the kernel line comes a moment before it."""
    t = exit_at.timestamp()
    kernel = (f"[{uptime_s:12.6f}] Out of memory: Killed process 314 (node) "
              f"total-vm:{total_vm_kb}kB, anon-rss:{anon_rss_kb}kB, file-rss:0kB, "
              "shmem-rss:0kB, UID:1000 pgtables:1344kB oom_score_adj:0")
    lines = [
        (-0.4, "app", mid, region, "info", kernel),
        (-0.2, "app", mid, region, "info",
         " INFO Main child exited with signal (with signal 'SIGKILL', core dumped? false)"),
        (-0.2, "app", mid, region, "info", " INFO Process appears to have been OOM killed!"),
        (-0.1, "app", mid, region, "info", " INFO Starting clean up."),
        (0.0, "app", mid, region, "info",
         f"[{uptime_s + 0.17:12.6f}] reboot: Restarting system"),
        (0.4, "runner", mid, region, "info",
         "machine restart policy set to 'on-failure', restarting"),
    ]
    lines += [(0.6 + k * 0.45, "proxy", mid, region, "error", applogs.proxy_pc01())
              for k in range(4)]
    lines += [(dt + 1.0, *rest) for dt, *rest in applogs.boot(mid, region, IMAGE)]
    return applogs.at(t, lines)


def _logs(w: World, seed: int, scripted: list[applogs.Entry],
          slices: list[datetime] = ()) -> None:
    """Ordinary traffic in the last 30 min and around each past event, plus scripted lines."""
    now = REF_NOW.timestamp()
    entries = applogs.background(MACHINES_AB, start=now - 30 * 60, end=now - 20, seed=seed)
    for i, t in enumerate(slices):
        entries += applogs.background(MACHINES_AB, start=t.timestamp() - 150,
                                      end=t.timestamp() + 90, seed=seed + 1 + i)
    applogs.serve(w, entries + scripted)


def _routes(w: World, machines: list[dict]) -> None:
    w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines",
            lambda r: json_response(200, machines, latency_ms=180))
    for m in machines:
        w.route("fly-machines", "GET", f"/v1/apps/{APP}/machines/{m['id']}/events",
                lambda r, m=m: json_response(200, m["events"], latency_ms=140))


def memory_oom() -> tuple[World, Callable[..., Any]]:
    """Machine A leaks: climbs ~28 %/h, is OOM-killed at 100%, restarts at ~38%, climbs again."""
    return oom_world([ago(hours=4, minutes=10), ago(hours=1, minutes=58)]), _memory_collect


# what the kernel printed at each kill: (anon-rss kB, total-vm kB, uptime s)
KILLS = [(219_764, 1_204_412, 21_612.4), (221_380, 1_211_020, 7_910.8),
         (220_912, 1_209_336, 7_121.5)]


def oom_world(kills: list[datetime]) -> World:
    """Machine A's leak, OOM-killed at each of ``kills`` (oldest first, at least two): it
    climbs from ~38 % after each restart at the rate of the first two kills."""
    resets = [k.timestamp() for k in kills]
    rise_per_s = (100 - 38) / (resets[1] - resets[0])

    def a_mem(t: float) -> float:
        since = max((r for r in resets if r <= t), default=None)
        base = 38 + rise_per_s * (t - since) if since is not None else 100 - rise_per_s * (resets[0] - t)
        return min(99.6, base + wobble(t, 0.6))

    def a_cache(t: float) -> float:
        return min(99.8, a_mem(t) + 4 + wobble(t, 0.4, 900))

    def b_mem(t: float) -> float:
        return 51 + wobble(t, 2.5, 5400, 1.0)

    def b_cache(t: float) -> float:
        return 66 + wobble(t, 2.0, 7200)

    a_events = []
    for i, kill in reversed(list(enumerate(kills))):  # newest first, as flyd lists them
        a_events += [start_event(kill + timedelta(seconds=4)),
                     exit_event(kill, restarts=i + 1, capitalised=i % 2 == 1)]
    a_events += [start_event(ago(days=2, hours=3)), launch_event(ago(days=2, hours=3, seconds=5))]
    machines = [
        machine(A, name="silent-sun-1234", region="iad", memory_mb=256, events=a_events),
        machine(B, name="misty-river-5678", region="ams", memory_mb=256),
    ]
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    _routes(w, machines)
    total = 231_735_296.0
    # the leak held ~99% of 256 MB when the kernel killed node (mem_total 226,304 kB)
    script = []
    for kill, (rss, vm, uptime) in zip(kills, KILLS):
        script += oom_script(A, "iad", kill, anon_rss_kb=rss, total_vm_kb=vm, uptime_s=uptime)
    recent = REF_NOW - timedelta(minutes=30)
    _logs(w, 31, script, slices=[k for k in kills if k < recent])
    add_prometheus(w, queries(APP, window=WINDOW), {
        "memory_pct": [(instance_labels(A, "iad"), a_mem), (instance_labels(B, "ams"), b_mem)],
        "memory_used_incl_cache_pct": [(instance_labels(A, "iad"), a_cache),
                                       (instance_labels(B, "ams"), b_cache)],
        "memory_total_bytes": [({**instance_labels(A, "iad"), "__name__": "fly_instance_memory_mem_total"},
                                lambda t: total),
                               ({**instance_labels(B, "ams"), "__name__": "fly_instance_memory_mem_total"},
                                lambda t: total)],
        "oom_exits": [({"instance": A}, lambda t: 1.0), ({"instance": B}, lambda t: 0.0)],
    })
    return w


def memory_page_cache() -> tuple[World, Callable[..., Any]]:
    """A false alarm: 'free' memory is low because of page cache; mem_available is plenty."""
    machines = [
        machine(A, name="silent-sun-1234", region="iad", memory_mb=512),
        machine(B, name="misty-river-5678", region="ams", memory_mb=512),
    ]
    w = World(configured={"FLY_API_TOKEN", "DATABASE_URL"}, environ=ENV)
    _routes(w, machines)
    total = 480_247_808.0
    _logs(w, 37, [])
    add_prometheus(w, queries(APP, window=WINDOW), {
        "memory_pct": [(instance_labels(A, "iad"), lambda t: 44 + wobble(t, 2.0, 3600)),
                       (instance_labels(B, "ams"), lambda t: 47 + wobble(t, 1.5, 4200, 2.0))],
        "memory_used_incl_cache_pct": [
            (instance_labels(A, "iad"), lambda t: 93 + wobble(t, 0.8, 3000)),
            (instance_labels(B, "ams"), lambda t: 91 + wobble(t, 0.9, 2600, 1.0))],
        "memory_total_bytes": [(instance_labels(A, "iad"), lambda t: total),
                               (instance_labels(B, "ams"), lambda t: total)],
        "oom_exits": [({"instance": A}, lambda t: 0.0), ({"instance": B}, lambda t: 0.0)],
    })
    return w, _memory_collect


SCENARIOS = {
    "memory": {
        "oom": ("one machine leaking past 90% with two OOM kills (exit 137) and restarts in "
                "6 h; the other steady at ~50%", memory_oom),
        "page-cache": ("a false alarm: dashboards show 91-93% counting page cache, but "
                       "mem_available says ~45% in use; no OOM, no restarts", memory_page_cache),
    },
}
