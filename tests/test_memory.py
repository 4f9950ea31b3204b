"""The memory runbook (seed Issue 3): demo scenarios through papermill, live mode against the
Fly Machines and Prometheus STAND-INS, sizing and bad input at function level."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from opslib.config import Target
from opslib.demo.world import machine
from opslib.thresholds import thresholds
from opslib.promql import queries
from opslib.reads import Readings
from opslib.runbooks import memory
from opslib.sources.fly_models import parse_events, parse_machines
from opslib.session import Session
from opslib.times import iso
from tests.conftest import clean_env, findings, only_run, run_dirs
from tests.inprocess import opslib_run
from tests.standins.fly_api import FlyApiStandIn, log_attrs
from tests.standins.fly_machines import FlyMachinesStandIn, leased_update
from tests.standins.prometheus import PrometheusStandIn

TOKEN = "fo1_TestReadOnlyToken_abcdefghijklmnopqrstuvwxyz0123"
A, B = "148ed193b95089", "3d8d9e1fe67e89"


def ids(f: dict) -> dict[str, str]:
    return {x["id"]: x["severity"] for x in f["findings"]}


# ----------------------------------------------------------------------------- demo target
def test_demo_oom_finds_the_leak_and_plans_the_seed_resize(reports):
    proc = opslib_run("run", "memory", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["status"], f["severity"], f["scenario"]) == ("ok", "critical", "oom")
    found = ids(f)
    assert found["memory-high"] == "critical"
    assert found["memory-oom"] == "critical"
    assert found["memory-restarts"] == "warning"
    assert found[f"memory-climbing-{A}"] == "warning"
    assert found["memory-sizing"] == "info"
    assert f"memory-climbing-{B}" not in found  # the steady machine is no leak
    detail = {x["id"]: x for x in f["findings"]}
    assert detail["memory-high"]["title"] == (f"1/2 machine(s) above 90% memory: {A} at 93% "
                                              "of 256 MB")
    assert detail["memory-oom"]["title"] == f"2 OOM kill(s) in the last 6h on {A}"
    # both exits are counted: one under exit_event, one under MonitorEvent.exit_event
    assert len([e for e in detail["memory-oom"]["evidence"] if "oom_killed at" in e]) == 2
    assert "fly_instance_exit_oom = 1" in " ".join(detail["memory-oom"]["evidence"])
    assert "peak 255 MB" in detail["memory-sizing"]["evidence"][0]
    assert f["escalation"]["level"] == 1
    actions = f["actions"]
    assert [(a["kind"], a["command"], a["status"]) for a in actions] == [
        ("machine.update", "fly scale vm shared-cpu-2x -a demo-app", "planned")] * 2
    assert {a["params"]["machine_id"] for a in actions} == {A, B}
    for a in actions:
        assert a["params"]["config_patch"] == {"guest": {"cpu_kind": "shared", "cpus": 2,
                                                         "memory_mb": 512}}
        assert a["basis"]["guest"]["memory_mb"] == 256
        assert a["api"]["method"] == "POST"
    assert len(f["plan_digest"]) == 16
    assert (run / "charts" / "memory-per-machine.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png" in (run / "memory.html").read_text()
    # the logs around both OOM exits hold the kernel's own line: node held ~215 MB of 256 MB
    oom_logs = detail["memory-oom-logs"]
    assert oom_logs["title"] == f"the kernel's log confirms 2 OOM kill(s): node on {A}"
    assert [e.split(": ", 1)[1] for e in oom_logs["evidence"]] == [
        "kernel killed node (pid 314) holding 216 MB anon-rss of 256 MB",
        "kernel killed node (pid 314) holding 215 MB anon-rss of 256 MB"]
    # the last 30 min hold no OOM (the next one is ~14 min away), and nothing else
    assert found["logs.no_signals"] == "ok" and "memory-oom-unrecorded" not in found
    pages = sorted((run / "raw" / "http").glob("*-fly-api.json"))
    assert "logs-truncated" not in found  # 100 lines a page, as the real API: all read
    assert len(pages) == 10, "the recent window and the slice around each OOM exit"


def test_demo_page_cache_does_not_cry_wolf(reports):
    proc = opslib_run("run", "memory", "--scenario", "page-cache", "--fail-on", "warning",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    f = findings(only_run(reports))
    assert f["severity"] == "ok"
    assert ids(f) == {"memory-ok": "ok", "memory-page-cache": "info", "logs.no_signals": "ok"}
    cache = next(x for x in f["findings"] if x["id"] == "memory-page-cache")
    assert "Not memory pressure" in cache["detail"]
    assert any("93% counting cache, 46% in use" in e for e in cache["evidence"])
    assert f["actions"] == [] and f["escalation"]["level"] == 0


# ----------------------------------------------------------------------------- live
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _oom_event(at: datetime, restarts: int, capitalised: bool) -> dict:
    ee = {"exit_code": 137, "oom_killed": True, "requested_stop": False, "restarting": True,
          "exited_at": iso(at)}
    req = {"MonitorEvent": {"exit_event": ee}} if capitalised else {"exit_event": ee}
    return {"type": "exit", "status": "stopped", "source": "flyd", "timestamp": _ms(at),
            "request": {**req, "restart_count": restarts}}


def _kernel(at: datetime, pid: int, name: str, anon_rss_kb: int, mid: str) -> list[dict]:
    """An OOM kill as the kernel and Fly's init log it."""
    z = lambda dt: dt.isoformat().replace("+00:00", "Z")  # noqa: E731
    return [log_attrs(z(at - timedelta(seconds=1)),
                      f"[ 7210.331204] Out of memory: Killed process {pid} ({name}) "
                      f"total-vm:1204412kB, anon-rss:{anon_rss_kb}kB, file-rss:0kB, "
                      "shmem-rss:0kB, UID:1000 pgtables:1344kB oom_score_adj:0", instance=mid),
            log_attrs(z(at - timedelta(seconds=0.8)),
                      " INFO Process appears to have been OOM killed!", instance=mid)]


def _live_logs(now: datetime) -> list[dict]:
    """The kernel's lines at A's two OOM exits; and on B, 6 min ago, a headless browser the
    app spawned killed by the kernel while the machine ran on (no OOM exit)."""
    lines = [log_attrs((now - timedelta(minutes=m, seconds=s)).isoformat().replace("+00:00", "Z"),
                       f"GET /api/items/{m * 60 + s} 200 4.2 ms - 312", instance=B, region="ams")
             for m in (1, 5, 20, 31, 119, 121) for s in (0, 20, 40)]
    lines += _kernel(now - timedelta(minutes=30), 314, "node", 497_812, A)
    lines += _kernel(now - timedelta(hours=2), 314, "node", 501_220, A)
    lines += [log_attrs((now - timedelta(minutes=6)).isoformat().replace("+00:00", "Z"),
                        "[ 9120.004211] Out of memory: Killed process 912 (chromium) "
                        "total-vm:2840012kB, anon-rss:301404kB, file-rss:0kB, shmem-rss:0kB, "
                        "UID:1000 pgtables:2112kB oom_score_adj:300", instance=B, region="ams")]
    return lines


def _live_world(app: str = "live-app"):
    now = _now()
    leaky = machine(A, name="a", region="iad", memory_mb=512, events=[
        {"type": "start", "status": "started", "source": "flyd",
         "timestamp": _ms(now - timedelta(minutes=29))},
        _oom_event(now - timedelta(minutes=30), 2, capitalised=True),
        _oom_event(now - timedelta(hours=2), 1, capitalised=False),
        _oom_event(now - timedelta(hours=9), 1, capitalised=False),  # outside the window
    ])
    steady = machine(B, name="b", region="ams", memory_mb=512)
    q = queries(app, window="6h")
    labels = lambda mid: {"app": app, "instance": mid}  # noqa: E731
    fixture = {
        q["memory_pct"]: [(labels(A), lambda t: 96.0), (labels(B), lambda t: 41.0)],
        q["memory_used_incl_cache_pct"]: [(labels(A), lambda t: 98.0), (labels(B), lambda t: 60.0)],
        q["memory_total_bytes"]: [(labels(A), lambda t: 480e6), (labels(B), lambda t: 480e6)],
        q["oom_exits"]: [({"instance": A}, lambda t: 1.0), ({"instance": B}, lambda t: 0.0)],
    }
    return {app: [leaky, steady]}, fixture


def test_live_against_stand_ins_then_replay(reports):
    apps, fixture = _live_world()
    with FlyMachinesStandIn(TOKEN, apps) as fly, PrometheusStandIn(TOKEN, fixture) as prom, \
            FlyApiStandIn(TOKEN, {"live-app": {"logs": _live_logs(_now())}}) as api:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url, FLY_PROMETHEUS_URL=prom.base,
                        FLY_API_BASE_URL=api.url)
        proc = opslib_run("run", "memory", "--app", "live-app", "--incident", "live", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        f = findings(run)
        assert f["target"] == "live" and f["severity"] == "critical"
        found = ids(f)
        assert found["memory-high"] == "critical" and found["memory-oom"] == "critical"
        oom = next(x for x in f["findings"] if x["id"] == "memory-oom")
        assert oom["title"] == f"2 OOM kill(s) in the last 6h on {A}"
        assert [a["command"] for a in f["actions"]] == ["fly scale memory 1024 -a live-app"] * 2
        assert sorted(r.path.split("?")[0] for r in fly.requests) == sorted([
            "/v1/apps/live-app/machines", f"/v1/apps/live-app/machines/{A}/events",
            f"/v1/apps/live-app/machines/{B}/events"])
        assert fly.mutations == [] and prom.mutations == []
        assert sorted(q["query"] for q in prom.queries) == sorted(
            queries("live-app", window="6h")[n] for n in
            ("memory_pct", "memory_used_incl_cache_pct", "memory_total_bytes", "oom_exits"))
        assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in prom.requests)
        # logs: the recent 30 min and a slice around each OOM exit in the window
        assert api.mutations == [] and len(api.requests) >= 3
        assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api.requests)
        detail = {x["id"]: x for x in f["findings"]}
        assert detail["memory-oom-logs"]["title"] == (
            f"the kernel's log confirms 2 OOM kill(s): node on {A}")
        assert "holding 486 MB anon-rss of 512 MB" in detail["memory-oom-logs"]["evidence"][0]
        unrecorded = detail["memory-oom-unrecorded"]
        assert unrecorded["severity"] == "critical" and B in unrecorded["title"]
        assert "killed chromium (pid 912), 294 MB anon-rss" in unrecorded["evidence"]
        assert found["logs.oom_kill"] == "critical"
    for path in run.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    proc = opslib_run("run", "memory", "--target", f"replay:{run}", "--incident", "replayed",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    replayed = next(p for p in run_dirs(reports) if p.parent.name == "replayed")
    assert findings(replayed)["findings"] == f["findings"]
    assert findings(replayed)["actions"] == f["actions"]


def test_live_bad_input_gives_findings_and_keeps_evidence(reports):
    """An app the Fly API does not know, and Prometheus with no series for it."""
    apps, _ = _live_world()
    with FlyMachinesStandIn(TOKEN, apps) as fly, PrometheusStandIn(TOKEN, {}) as prom, \
            FlyApiStandIn(TOKEN, {"live-app": {"logs": []}}) as api:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url, FLY_PROMETHEUS_URL=prom.base,
                        FLY_API_BASE_URL=api.url)
        proc = opslib_run("run", "memory", "--app", "no-such-app", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    f = findings(run)
    detail = {x["id"]: x for x in f["findings"]}
    assert detail["machines-error"]["severity"] == "critical"
    assert "app no-such-app not found" in detail["machines-error"]["title"]
    assert detail["no-data-memory-pct"]["severity"] == "unknown"
    assert "'no-such-app'" in detail["no-data-memory-pct"]["detail"]
    assert f["severity"] == "critical" and f["actions"] == []
    assert detail["logs-fetch-failed"]["severity"] == "unknown"
    assert "404" in detail["logs-fetch-failed"]["title"]
    assert len(list((run / "raw" / "http").glob("*-prometheus.json"))) == 4
    assert len(list((run / "raw" / "http").glob("*-fly-machines.json"))) == 1
    assert (run / "EVIDENCE_MANIFEST.json").is_file()


# ----------------------------------------------------------------------------- gated resize
def test_resize_is_gated_by_the_plan_digest(reports):
    """Against the Fly Machines API STAND-IN: zero mutating requests without a matching
    confirmation; with it exactly the planned updates, each sending the machine's full config
    with the new ``guest``; the same confirmation again is refused as stale."""
    import json

    apps, fixture = _live_world()
    images = {m["id"]: m["config"]["image"] for m in apps["live-app"]}
    with FlyMachinesStandIn(TOKEN, apps) as fly, PrometheusStandIn(TOKEN, fixture) as prom, \
            FlyApiStandIn(TOKEN, {"live-app": {"logs": _live_logs(_now())}}) as api:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url, FLY_PROMETHEUS_URL=prom.base,
                        FLY_API_BASE_URL=api.url)
        base = ("run", "memory", "--app", "live-app")

        def latest() -> dict:
            return findings(max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns))

        assert opslib_run(*base, "--incident", "p1", env=env).returncode == 0
        plan = latest()
        digest = plan["plan_digest"]
        assert [(a["kind"], a["params"]["machine_id"], a["status"]) for a in plan["actions"]] == [
            ("machine.update", A, "planned"), ("machine.update", B, "planned")]
        assert fly.mutations == []

        proc = opslib_run(*base, "--incident", "p2", "--apply", "--confirm", "0" * 16, env=env)
        assert proc.returncode == 1, proc.stdout
        assert latest()["apply"]["outcome"] == "refused"
        assert [a["status"] for a in latest()["actions"]] == ["refused", "refused"]
        assert fly.mutations == [] and prom.mutations == [] and api.mutations == []

        proc = opslib_run(*base, "--incident", "p3", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        applied = latest()
        assert applied["apply"]["outcome"] == "applied"
        assert [a["status"] for a in applied["actions"]] == ["applied", "applied"]
        assert [(r.method, r.path) for r in fly.mutations] == [
            *leased_update("live-app", A), *leased_update("live-app", B)]
        for request, mid in zip(fly.updates, (A, B)):
            config = json.loads(request.body)["config"]
            assert config["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}
            # the full config goes back: the image and metadata are kept, not dropped
            assert config["image"] == images[mid]
            assert config["metadata"]["fly_process_group"] == "app"
        assert [m["config"]["guest"]["memory_mb"] for m in apps["live-app"]] == [1024, 1024]

        # The same confirmation again: the machines have 1024 MB now, so the plan is stale.
        proc = opslib_run(*base, "--incident", "p4", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 1
        assert latest()["apply"]["outcome"] == "refused"
        assert len(fly.mutations) == 6


# ----------------------------------------------------------------------------- function level
def _collect(fly_url: str, prom_url: str, token: str = TOKEN, app: str = "live-app", **kw):
    target = Target("live", app, f"https://{app}.fly.dev",
                    environ={"FLY_API_TOKEN": token, "FLY_FLAPS_BASE_URL": fly_url,
                             "FLY_PROMETHEUS_URL": prom_url})
    session = Session("live")
    kw.setdefault("log_window_minutes", 0)  # these tests are about the Machines API and Prometheus
    data = memory.collect(session, target, **kw)
    limits = thresholds()
    summary = memory.machine_summary(data, session.now(), limits)
    return data, summary, memory.assess(data, summary, app, limits, session.now())


def test_token_without_permission_says_what_to_check():
    apps, fixture = _live_world()
    other = "fo1_ReadOnlyOtherOrg_abcdefghijklmnopqrstuvwxyz0123"
    with FlyMachinesStandIn(TOKEN, apps) as fly, \
            PrometheusStandIn(TOKEN, fixture, forbidden=[other]) as prom:
        data, summary, found = _collect(fly.url, prom.base, token=other)
    by_id = {f.id: f for f in found}
    assert by_id["machines-error"].severity == "unknown"
    assert "401" in by_id["machines-error"].title
    mem = by_id["prometheus-error-memory-pct"]
    assert mem.severity == "unknown" and "auth" in mem.title
    assert "FLY_API_TOKEN must be allowed to read this org's metrics" in mem.detail


def test_promql_override_serves_a_plain_prometheus():
    apps, _ = _live_world()
    custom = '100 * avg by (instance) (node_memory_used_ratio{job="{app}"})'
    rendered = custom.replace("{app}", "live-app")
    fixture = {rendered: [({"instance": A}, lambda t: 75.0), ({"instance": B}, lambda t: 30.0)]}
    with FlyMachinesStandIn(TOKEN, apps) as fly, PrometheusStandIn(TOKEN, fixture) as prom:
        data, summary, found = _collect(fly.url, prom.base, promql={"memory_pct": custom})
        assert rendered in [q["query"] for q in prom.queries]
    assert summary.set_index("machine").loc[A, "current_pct"] == 75.0
    assert {f.id: f.severity for f in found}["memory-high"] == "warning"


def test_thresholds_are_overridable_but_oom_stays_critical():
    apps, fixture = _live_world()
    with FlyMachinesStandIn(TOKEN, apps) as fly, PrometheusStandIn(TOKEN, fixture) as prom:
        target = Target("live", "live-app", "https://live-app.fly.dev",
                        environ={"FLY_API_TOKEN": TOKEN, "FLY_FLAPS_BASE_URL": fly.url,
                                 "FLY_PROMETHEUS_URL": prom.base})
        session = Session("live")
        data = memory.collect(session, target, log_window_minutes=0)
    limits = thresholds({"memory_pct": [97, 99]})
    summary = memory.machine_summary(data, session.now(), limits)
    found = {f.id: f.severity for f in memory.assess(data, summary, "live-app", limits,
                                                     session.now())}
    assert "memory-high" not in found and found["memory-oom"] == "critical"


def test_a_machine_gone_hours_ago_has_no_current_value():
    from opslib.promql import queries as qs
    from opslib.sources.prometheus import tidy

    now = _now().replace(second=0, microsecond=0)
    t_now, t_old = now.timestamp(), (now - timedelta(hours=3)).timestamp()
    frame = tidy({"resultType": "matrix", "result": [
        {"metric": {"instance": A}, "values": [[t_now - 120, "60"], [t_now, "61"]]},
        {"metric": {"instance": "gone0000000000"}, "values": [[t_old, "97"]]}]})
    data = memory.MemoryData("6h", "2m", qs("x"), Readings.of({
        "machines": parse_machines([machine(A, name="a", region="iad")]), "memory_pct": frame}))
    summary = memory.machine_summary(data, now, thresholds()).set_index("machine")
    assert summary.loc[A, "current_pct"] == 61.0
    assert pd.isna(summary.loc["gone0000000000", "current_pct"])
    assert summary.loc["gone0000000000", "peak_pct"] == 97.0
    assert summary.loc["gone0000000000", "status"] == "unknown"
    found = {f.id for f in memory.assess(data, memory.machine_summary(data, now, thresholds()),
                                         "x", thresholds(), now)}
    assert "memory-high" not in found and "memory-ok" in found


def test_exits_read_both_key_casings_and_respect_the_window():
    now = _now()
    events = {A: [_oom_event(now - timedelta(minutes=5), 3, capitalised=True),
                  _oom_event(now - timedelta(minutes=50), 2, capitalised=False),
                  {"type": "exit", "status": "stopped", "source": "flyd",
                   "timestamp": _ms(now - timedelta(hours=2)),
                   "request": {"exit_event": {"exit_code": 1, "oom_killed": False}}},
                  _oom_event(now - timedelta(hours=7), 1, capitalised=False)]}
    df = memory.exits_frame({mid: parse_events(evs) for mid, evs in events.items()}, now, 6 * 3600)
    assert df["oom_killed"].tolist() == [True, True, False]
    assert df["restart_count"].tolist() == [3, 2, 0]
    assert df["exit_code"].tolist() == [137, 137, 1]


@pytest.mark.parametrize("kind, cpus, mb, peak, oom, command, guest", [
    ("shared", 1, 256, 250, True, "fly scale vm shared-cpu-2x -a app",
     {"cpu_kind": "shared", "cpus": 2, "memory_mb": 512}),
    ("shared", 1, 512, 470, False, "fly scale memory 1024 -a app",
     {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}),
    ("shared", 1, 512, 380, False, "fly scale memory 1024 -a app",  # 74%: warning
     {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}),
    ("shared", 1, 2048, 2040, True, "fly scale vm shared-cpu-2x --vm-memory 4096 -a app",
     {"cpu_kind": "shared", "cpus": 2, "memory_mb": 4096}),
    ("performance", 1, 2048, 2000, True, "fly scale vm performance-2x -a app",
     {"cpu_kind": "performance", "cpus": 2, "memory_mb": 4096}),
])
def test_next_size_up(kind, cpus, mb, peak, oom, command, guest):
    size = memory.next_size(kind, cpus, mb, peak, 70, oom)
    assert size["guest"] == guest
    assert memory.scale_command(size, "app") == command
    assert size["memory_mb"] > mb and peak / size["memory_mb"] < 0.7


def test_bad_window_is_a_usage_error_before_any_call():
    from opslib.errors import UsageError

    target = Target("live", "x", "https://x.fly.dev", environ={})
    with pytest.raises(UsageError, match="11000"):
        memory.collect(Session("live"), target, window="30d", step="1m")
    with pytest.raises(UsageError, match="unknown query"):
        memory.collect(Session("live"), target, promql={"mem": "x"})


@pytest.mark.parametrize("kind, cpus, mb, peak, oom, expected", [
    # shared-cpu-8x has at most 16 GB: 32 GB on shared CPUs is refused by Fly
    ("shared", 8, 16384, 16000, True, ("performance", 4, 32768)),
    ("shared", 4, 8192, 8000, True, ("shared", 8, 16384)),
    ("shared", 1, 1024, 900, False, ("shared", 1, 2048)),
    ("performance", 1, 2048, 2000, True, ("performance", 2, 4096)),  # the preset: scale vm
])
def test_the_next_size_up_is_one_fly_accepts(kind, cpus, mb, peak, oom, expected):
    """Fly's limits per CPU: shared 256 MB–2 GB, performance 2–8 GB (flyctl's machine
    presets); the size we plan and print must be within them."""
    size = memory.next_size(kind, cpus, mb, peak, 80.0, oom)
    guest = size["guest"]
    assert (guest["cpu_kind"], guest["cpus"], guest["memory_mb"]) == expected
    per_cpu = {"shared": (256, 2048), "performance": (2048, 8192)}[guest["cpu_kind"]]
    assert per_cpu[0] * guest["cpus"] <= guest["memory_mb"] <= per_cpu[1] * guest["cpus"]
    assert memory.scale_command(size, "app").startswith("fly scale ")


def test_an_auto_stop_is_not_a_restart():
    """Fly's proxy stopping an idle machine (a requested, clean exit) is not a memory
    restart; a crash in the same window is."""
    from opslib.demo.world import exit_events
    from opslib.promql import queries as qs

    now = _now().replace(second=0, microsecond=0)
    idle = machine(A, name="a", region="iad", state="stopped",
                   events=exit_events(at=now - timedelta(minutes=20), code=0, oom=False,
                                      restarts=0, requested=True))
    crashed = machine(B, name="b", region="iad",
                      events=exit_events(at=now - timedelta(minutes=20), code=1, oom=False,
                                         restarts=1, requested=False))
    data = memory.MemoryData("6h", "2m", qs("x"), Readings.of(
        {"machines": parse_machines([idle, crashed])}))
    summary = memory.machine_summary(data, now, thresholds()).set_index("machine")
    assert (summary.loc[A, "exits"], summary.loc[B, "exits"]) == (0, 1)
    found = {f.id: f for f in memory.assess(data, memory.machine_summary(data, now, thresholds()),
                                            "x", thresholds(), now)}
    assert "on " + B in found["memory-restarts"].title and A not in found["memory-restarts"].title
