"""The deploy, rollback, scale-down and tls runbooks end to end: demo scenarios through
papermill via the CLI, live runs against real local servers (HTTP and TLS on 127.0.0.1) and
the Fly STAND-INS, and the gated apply: zero mutating requests without a matching
confirmation, exactly the planned ones with it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trustme

from opslib.config import Target
from opslib.demo.world import machine
from opslib.session import Session
from opslib.times import iso
from opslib.assess import releases
from opslib.runbooks import rollback, scale_down, tls
from opslib.thresholds import THRESHOLDS
from tests.conftest import clean_env, findings, only_run, run_dirs
from tests.inprocess import opslib_run
from tests.servers import LocalHTTPServer, Reply
from tests.standins.fly_api import FlyApiStandIn, rest_release
from tests.standins.fly_machines import FlyMachinesStandIn, leased_update, new_certificate
from tests.tls_servers import LocalTLSServer, ca_file, leaf

TOKEN = "fo1_RunbookTestToken_abcdefghijklmnopqrstuvwxyz01"
FOREIGN = "fo1_ForeignTeamToken_abcdefghijklmnopqrstuvwxyz01"
APP = "live-app"
REG = f"registry.fly.io/{APP}"
OLD, NEW = f"{REG}:deployment-01OLDGOOD00", f"{REG}:deployment-01NEWBAD000"
NOW = datetime.now(timezone.utc)


def ids(f: dict) -> dict[str, str]:
    return {x["id"]: x["severity"] for x in f["findings"]}


def latest(reports: Path) -> Path:
    return max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns)


# ----------------------------------------------------------------------------- demo scenarios
DEMO = "demo-app"
ROLLBACK_IMG = "registry.fly.io/demo-app:deployment-01JC2M7T4Q"
DEMOS = [
    ("deploy", "healthy", (), "ok", 0, {"deploy-ok": "ok", "health-endpoint": "ok"}, []),
    ("deploy", "degraded", (), "critical", 1, {"deploy-degraded": "critical"}, []),
    ("deploy", "interrupted", (), "critical", 1,
     {"deploy-release-failed": "critical", "deploy-split": "critical"}, []),
    ("rollback", "bad-release", (), "critical", 1,
     {"rollback-target": "info", "deploy-degraded": "critical", "rollback-caveats": "info"},
     # the stopped machine first, kept stopped (an update boots it otherwise)
     [f"fly machine update 6e82d4ec1f4918 --image {ROLLBACK_IMG} --skip-start -a {DEMO} --yes"]
     + [f"fly machine update {m} --image {ROLLBACK_IMG} -a {DEMO} --yes"
        for m in ("3d8d9e1fe67e89", "148ed193b95089")]),
    ("rollback", "healthy", (), "ok", 0, {"rollback-not-needed": "ok"}, []),
    ("scale-down", "running", (), "warning", 2, {"scale-down-plan": "warning"},
     [f"fly machine stop {m} -a {DEMO}" for m in ("148ed193b95089", "6e82d4ec1f4918",
                                                  "3d8d9e1fe67e89")]),
    ("scale-down", "scaled-down", (), "warning", 1, {"scale-already-down": "warning"}, []),
    ("scale-down", "scaled-down", ("direction=up",), "warning", 1, {"scale-up-plan": "warning"},
     [f"fly machine start {m} -a {DEMO}" for m in ("148ed193b95089", "6e82d4ec1f4918",
                                                   "3d8d9e1fe67e89")]),
    ("scale-down", "running", ("direction=up",), "ok", 0,
     {"scale-nothing-to-restore": "ok"}, []),
    ("tls", "expiring", (), "critical", 2,
     {"tls-expiring-www.demo-shop.com": "critical",
      "tls-fly-validation-www.demo-shop.com": "critical",
      "tls-fly-pending-api.demo-shop.com": "critical", "tls-ok-demo-app.fly.dev": "ok"},
     [f"fly certs check {h} -a {DEMO}" for h in ("www.demo-shop.com", "api.demo-shop.com")]),
    ("tls", "healthy", (), "ok", 0,
     {"tls-ok-www.demo-shop.com": "ok", "tls-fly-ok-api.demo-shop.com": "ok"}, []),
]


@pytest.mark.parametrize("runbook, scenario, params, severity, level, key, commands", DEMOS,
                         ids=[f"{d[0]}-{d[1]}{'-' + d[2][0] if d[2] else ''}" for d in DEMOS])
def test_demo_scenario(reports, runbook, scenario, params, severity, level, key, commands):
    args = ["run", runbook, "--scenario", scenario]
    for p in params:
        args += ["-p", p]
    proc = opslib_run(*args, env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["status"], f["target"], f["scenario"]) == ("ok", "demo", scenario)
    assert f["severity"] == severity, f["findings"]
    found = ids(f)
    for fid, sev in key.items():
        assert found.get(fid) == sev, (fid, found)
    assert f["escalation"]["level"] == level, f["escalation"]
    assert [a["command"] for a in f["actions"]] == commands
    assert all(a["status"] == "planned" for a in f["actions"])
    if commands:
        assert len(f["plan_digest"]) == 16
    if severity == "ok":  # the healthy / false-alarm case does not cry wolf
        assert not [x for x in f["findings"] if x["severity"] in ("warning", "critical", "unknown")]
    assert f"{runbook}.html" in {p.name for p in run.iterdir()}
    check = DETAILS.get((runbook, scenario)) or DETAILS.get((runbook, scenario, params))
    if check:
        check(f)


def _rollback_details(f: dict) -> None:
    rb = {x["id"]: x for x in f["findings"]}
    assert "v43 → v41" in rb["rollback-target"]["title"]
    assert f"fly deploy --image {ROLLBACK_IMG} -a {DEMO}" in rb["rollback-target"]["detail"]
    assert "passed over v42: status failed" in rb["rollback-target"]["evidence"]
    action = f["actions"][0]
    assert action["params"] == {"machine_id": "6e82d4ec1f4918",
                                "config_patch": {"image": ROLLBACK_IMG}}
    assert action["api"]["path"] == f"/v1/apps/{DEMO}/machines/6e82d4ec1f4918"
    assert action["basis"]["image"] == "registry.fly.io/demo-app:deployment-01JD7Q3K8X"


def _tls_details(f: dict) -> None:
    t = {x["id"]: x for x in f["findings"]}
    pending = t["tls-fly-pending-api.demo-shop.com"]
    assert any("CNAME api.demo-shop.com → demo-app.fly.dev" in e for e in pending["evidence"])
    assert any("DNS_NOT_CONFIGURED" in e for e in pending["evidence"])
    assert pending["escalate"] == 2
    assert "expires in 5 day(s)" in t["tls-expiring-www.demo-shop.com"]["title"]


def _scale_details(f: dict) -> None:
    sd = {x["id"]: x for x in f["findings"]}
    assert "regions ams×1, iad×2" in sd["scale-prior-state"]["title"]
    assert "shared-cpu-1x/512 MB×3" in sd["scale-prior-state"]["title"]
    basis = f["actions"][0]["basis"]
    assert (basis["region"], basis["size"], basis["memory_mb"], basis["state"]) == (
        "iad", "shared-cpu-1x", 512, "started")


# What an engineer acts on is in the findings: the rollback command, the DNS records, the
# prior state of a scale-down.
DETAILS = {("rollback", "bad-release"): _rollback_details, ("tls", "expiring"): _tls_details,
           ("scale-down", "running", ()): _scale_details}


# ----------------------------------------------------------------------------- live: deploy
def _fleet(image: str, release: str, n: int = 2, checks: str = "passing") -> list[dict]:
    return [machine(f"{i:014x}", name=f"m{i}", region=("iad", "ams")[i % 2], image=image,
                    release=release, checks=checks) for i in range(1, n + 1)]


def _releases() -> list[dict]:
    return [rest_release(3, image=NEW, created_at=iso(NOW - timedelta(minutes=8))),
            rest_release(2, image=OLD, created_at=iso(NOW - timedelta(days=1)))]


def _health_from(fly: FlyMachinesStandIn):
    """The 'app': healthy only when every machine runs the old, good image."""
    def handler(req) -> Reply:
        if all(m["config"]["image"] == OLD for m in fly.apps[APP]):
            return Reply(200, {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()})
        return Reply(503, "")
    return handler


def test_live_deploy_healthy_then_replayed(reports):
    with FlyMachinesStandIn(TOKEN, {APP: _fleet(NEW, "3")}) as fly, \
            FlyApiStandIn(TOKEN, {APP: {"releases": _releases()}}) as api, \
            LocalHTTPServer(lambda r: Reply(200, {"status": "ok", "timestamp":
                                                  datetime.now(timezone.utc).isoformat()})) as app:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url, FLY_API_BASE_URL=api.url)
        proc = opslib_run("run", "deploy", "--app", APP, "--app-url", app.url, "-p", "probes=2",
                          env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        f = findings(run)
        assert f["severity"] == "ok" and ids(f)["deploy-ok"] == "ok", f["findings"]
        assert f["version"] == "v3"
        assert [r.path for r in api.requests] == [f"/api/v1/apps/{APP}/releases?limit=10"]
        assert fly.mutations == [] and api.mutations == []
        for path in run.rglob("*"):
            assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
    proc = opslib_run("run", "deploy", "--target", f"replay:{run}", "--incident", "replayed",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stderr
    replayed = next(p for p in run_dirs(reports) if p.parent.name == "replayed")
    assert findings(replayed)["findings"] == f["findings"]


@pytest.mark.parametrize("case", ["missing-app", "foreign-token"])
def test_live_bad_input_is_a_finding_with_evidence(reports, case):
    with FlyMachinesStandIn(TOKEN, {APP: _fleet(NEW, "3")}, foreign_tokens=[FOREIGN]) as fly, \
            FlyApiStandIn(TOKEN, {APP: {"releases": _releases()}}, foreign_tokens=[FOREIGN]) as api, \
            LocalHTTPServer(lambda r: Reply(200, {"status": "ok", "timestamp":
                                                  datetime.now(timezone.utc).isoformat()})) as app:
        app_name, token = ("no-such-app", TOKEN) if case == "missing-app" else (APP, FOREIGN)
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=token,
                        FLY_FLAPS_BASE_URL=fly.url, FLY_API_BASE_URL=api.url)
        proc = opslib_run("run", "deploy", "--app", app_name, "--app-url", app.url,
                          "-p", "probes=1", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    f = findings(run)
    by = {x["id"]: x for x in f["findings"]}
    if case == "missing-app":
        assert by["deploy-machines-error"]["severity"] == "critical"
        assert "app 'no-such-app' not found" in by["deploy-machines-error"]["title"]
        assert "fly apps list" in by["deploy-releases-error"]["detail"]
        status = 404
    else:
        assert by["deploy-releases-error"]["severity"] == "unknown"
        assert "lacks permission" in by["deploy-machines-error"]["title"]
        assert "fly tokens create" in by["deploy-machines-error"]["detail"]
        status = 403
    recorded = [json.loads(p.read_text()) for p in (run / "raw" / "http").glob("*.json")]
    assert status in {r["response"]["status"] for r in recorded if r["source"] == "fly-machines"}
    assert (run / "EVIDENCE_MANIFEST.json").exists()
    assert opslib_run("verify", str(run)).returncode == 0


# ----------------------------------------------------------------------------- live: rollback
def test_rollback_is_gated_then_applied_and_verified(reports):
    fleet = _fleet(NEW, "3", checks="critical")
    with FlyMachinesStandIn(TOKEN, {APP: fleet}) as fly, \
            FlyApiStandIn(TOKEN, {APP: {"releases": _releases()}}) as api, \
            LocalHTTPServer(_health_from(fly)) as app:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url, FLY_API_BASE_URL=api.url)
        base = ("run", "rollback", "--app", APP, "--app-url", app.url, "-p", "probes=2")
        assert opslib_run(*base, "--incident", "r1", env=env).returncode == 0
        plan = findings(latest(reports))
        digest = plan["plan_digest"]
        assert [(a["kind"], a["params"]) for a in plan["actions"]] == [
            ("machine.update", {"machine_id": m["id"], "config_patch": {"image": OLD}})
            for m in sorted(fleet, key=lambda m: (m["region"], m["id"]))]
        assert fly.mutations == [] and api.mutations == []

        proc = opslib_run(*base, "--incident", "r2", "--apply", "--confirm", "f" * 16, env=env)
        assert proc.returncode == 1
        assert findings(latest(reports))["apply"]["outcome"] == "refused"
        assert fly.mutations == []

        proc = opslib_run(*base, "--incident", "r3", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        applied = findings(latest(reports))
        assert [a["status"] for a in applied["actions"]] == ["applied", "applied"]
        order = [a["params"]["machine_id"] for a in plan["actions"]]
        assert [(r.method, r.path) for r in fly.mutations] == [
            x for mid in order for x in leased_update(APP, mid)]
        assert all(r.headers.get("fly-machine-lease-nonce") for r in fly.updates)
        sent = [json.loads(r.body) for r in fly.updates]
        assert all(s["config"]["image"] == OLD and s["config"]["guest"]["memory_mb"] == 512
                   for s in sent)  # the full config, with the image patched
        waits = [r.path for r in fly.requests if "/wait?" in r.path]
        assert len(waits) == 2 and all("state=started" in w for w in waits)
        assert ids(applied)["rollback-verified"] == "ok"

        # The same digest again: every machine is on the old image now, the plan is stale.
        proc = opslib_run(*base, "--incident", "r4", "--apply", "--confirm", digest, env=env)
        assert proc.returncode == 1
        assert len(fly.mutations) == 6


# ----------------------------------------------------------------------------- live: scale-down
def test_scale_down_and_back_is_gated_and_restores_the_recorded_machines(reports):
    fleet = _fleet(OLD, "2", n=3)
    fleet[2]["state"] = "stopped"  # not part of the capacity before the scale-down
    with FlyMachinesStandIn(TOKEN, {APP: fleet}) as fly:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url)
        down = ("run", "scale-down", "--app", APP, "--app-url", "http://127.0.0.1:9")
        assert opslib_run(*down, "--incident", "s1", env=env).returncode == 0
        plan = findings(latest(reports))
        started = [m["id"] for m in fleet[:2]]
        assert [(a["kind"], a["params"]["machine_id"]) for a in plan["actions"]] == [
            ("machine.stop", mid) for mid in started]
        assert plan["escalation"]["level"] == 2

        assert opslib_run(*down, "--incident", "s2", "--apply", "--confirm", "0" * 16,
                          env=env).returncode == 1
        assert fly.mutations == []

        assert opslib_run(*down, "--incident", "s3", "--apply", "--confirm",
                          plan["plan_digest"], env=env).returncode == 0
        down_run = latest(reports)
        assert [(r.method, r.path) for r in fly.mutations] == [
            ("POST", f"/v1/apps/{APP}/machines/{mid}/stop") for mid in started]
        assert all(m["state"] == "stopped" for m in fly.apps[APP])

        up = ("run", "scale-down", "--app", APP, "--app-url", "http://127.0.0.1:9",
              "-p", "direction=up", "-p", f"restore_from={down_run}")
        assert opslib_run(*up, "--incident", "s4", env=env).returncode == 0
        restore = findings(latest(reports))
        # exactly the machines that were running, not the third one that was already stopped
        assert [(a["kind"], a["params"]["machine_id"]) for a in restore["actions"]] == [
            ("machine.start", mid) for mid in started]
        assert "scale-record" in ids(restore)
        assert len(fly.mutations) == 2

        assert opslib_run(*up, "--incident", "s5", "--apply", "--confirm",
                          restore["plan_digest"], env=env).returncode == 0
        assert [(r.method, r.path) for r in fly.mutations[2:]] == [
            ("POST", f"/v1/apps/{APP}/machines/{mid}/start") for mid in started]
        assert [m["state"] for m in fly.apps[APP]] == ["started", "started", "stopped"]


# ----------------------------------------------------------------------------- live: tls
@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    authority = trustme.CA()
    return authority, ca_file(authority, tmp_path_factory.mktemp("ca"))


def _cert(host: str, **kw) -> dict:
    d = new_certificate(host, APP)
    d.update(status="active", configured=True, **kw)
    return d


def test_tls_live_plans_readd_and_check_and_applies_exactly_them(reports, ca):
    authority, cafile = ca
    broken, pending, fine = "shop.example.test", "api.example.test", "www.example.test"
    certs = {APP: {broken: _cert(broken), fine: _cert(fine),
                   pending: {**new_certificate(pending, APP), "validation_errors": [
                       {"code": "DNS_NOT_CONFIGURED", "message": f"{pending} has no A record",
                        "remediation": "", "timestamp": iso(NOW)}]}}}
    sni = {broken: leaf(authority, broken, days_left=-1), fine: leaf(authority, fine),
           pending: leaf(authority, fine)}  # the proxy's fallback: a name mismatch
    with FlyMachinesStandIn(TOKEN, {APP: _fleet(OLD, "2")}, certificates=certs) as fly, \
            LocalTLSServer(*leaf(authority, fine), sni=sni) as server:
        env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                        FLY_FLAPS_BASE_URL=fly.url, SSL_CERT_FILE=cafile)
        base = ("run", "tls", "--app", APP, "--app-url", f"https://{fine}",
                "-p", "connect_host=127.0.0.1", "-p", f"port={server.port}")
        assert opslib_run(*base, "--incident", "t1", env=env).returncode == 0
        plan = findings(latest(reports))
        found = ids(plan)
        assert found[f"tls-expired-{broken}"] == "critical"
        assert found[f"tls-name-{pending}"] == "critical"
        assert found[f"tls-fly-pending-{pending}"] == "critical"
        assert found[f"tls-ok-{fine}"] == "ok" and found[f"tls-fly-ok-{fine}"] == "ok"
        # hostnames in order: the app URL's, then the app's certificates as listed
        assert [(a["kind"], a["params"]["hostname"]) for a in plan["actions"]] == [
            ("cert.check", pending), ("cert.readd", broken)]
        assert fly.mutations == []
        assert set(server.served_names) >= {broken, pending, fine}  # SNI was sent

        assert opslib_run(*base, "--incident", "t2", "--apply", "--confirm", "a" * 16,
                          env=env).returncode == 1
        assert fly.mutations == []

        assert opslib_run(*base, "--incident", "t3", "--apply", "--confirm",
                          plan["plan_digest"], env=env).returncode == 0
        applied = findings(latest(reports))
        assert {a["status"] for a in applied["actions"]} == {"applied"}
        expected = {("POST", f"/v1/apps/{APP}/certificates/{pending}/check"),
                    ("DELETE", f"/v1/apps/{APP}/certificates/{broken}"),
                    ("POST", f"/v1/apps/{APP}/certificates/acme")}
        assert {(r.method, r.path) for r in fly.mutations} == expected
        assert len(fly.mutations) == 3
        acme = next(r for r in fly.mutations if r.path.endswith("/acme"))
        assert json.loads(acme.body) == {"hostname": broken}
        assert fly.certificates[APP][broken]["status"] == "pending_validation"  # re-ordered


def test_tls_hostname_not_configured_on_the_app_is_a_clear_finding(ca, monkeypatch):
    authority, cafile = ca
    typo = "shpo.example.test"
    with FlyMachinesStandIn(TOKEN, {APP: []}, certificates={APP: {}}) as fly, \
            LocalTLSServer(*leaf(authority, "shop.example.test")) as server:
        target = Target("live", APP, "https://shop.example.test",
                        environ={"FLY_API_TOKEN": TOKEN, "FLY_FLAPS_BASE_URL": fly.url})
        session = Session("live")
        monkeypatch.setenv("SSL_CERT_FILE", cafile)
        data = tls.collect(session, target, hostnames=[typo], port=server.port,
                           connect_host="127.0.0.1", timeout=3)
        found, verdicts = tls.assess(data, APP, session.now())
    by = {f.id: f for f in found}
    miss = by[f"tls-not-configured-{typo}"]
    assert miss.severity == "warning" and f"{typo} is not configured on app {APP}" in miss.title
    assert f"fly certs add {typo} -a {APP}" in miss.detail and "spelling" in miss.detail
    assert by[f"tls-name-{typo}"].severity == "critical"
    assert tls.plan_actions(verdicts, APP) == []  # nothing to re-add on an app that lacks it
    assert fly.mutations == []


# ----------------------------------------------------------------------------- function level
def test_rollback_without_a_good_release_escalates():
    from opslib.assess.releases import ReleaseData
    from opslib.reads import Readings
    from opslib.sources.fly_models import Release, parse_machines
    from opslib.sources.fly_platform import Releases

    rel = (Release.from_api(rest_release(5, image=NEW, created_at=iso(NOW - timedelta(minutes=5))), "rest"),
           Release.from_api(rest_release(4, status="failed", stable=False, image=OLD,
                                         created_at=iso(NOW - timedelta(hours=2))), "rest"))
    data = ReleaseData(Readings.of({"releases": Releases(rel),
                                    "machines": parse_machines(_fleet(NEW, "5", checks="critical"))}))
    d, tables = rollback.decide(data, APP, NOW, dict(THRESHOLDS), "https://x/health")
    by = {f.id: f for f in d.findings}
    assert by["rollback-no-target"].severity == "critical" and by["rollback-no-target"].escalate == 2
    assert "v4: status failed" in by["rollback-no-target"].evidence
    assert rollback.plan_actions(d, tables["machines"], APP) == []
    d, _ = rollback.decide(data, APP, NOW, dict(THRESHOLDS), "https://x/health", to_version=9)
    by = {f.id: f for f in d.findings}
    assert "v9 is not among the last 2 releases (v4–v5)" in by["rollback-no-target"].title


def test_scale_up_reports_autostart_missing_and_resized_machines():
    from opslib.reads import Readings
    from opslib.sources.fly_models import parse_machines

    fleet = _fleet(OLD, "2", n=2)
    fleet[0]["config"]["services"] = [{"internal_port": 8080}]  # autostart defaults to on
    data = scale_down.ScaleData(Readings.of({"machines": parse_machines(fleet)}))
    plan = scale_down.assess(data, APP, direction="down")
    assert {f.id for f in plan.findings} >= {"scale-down-plan", "scale-autostart"}
    for m in fleet:
        m["state"] = "stopped"
    fleet[1]["config"]["guest"]["memory_mb"] = 1024
    record = {"path": "x/findings.json", "app": APP, "machines": [
        {"id": fleet[0]["id"], "memory_mb": 512, "region": "ams"},
        {"id": fleet[1]["id"], "memory_mb": 512, "region": "iad"},
        {"id": "0000gone000000", "memory_mb": 512, "region": "iad"}]}
    plan = scale_down.assess(scale_down.ScaleData(Readings.of(
        {"machines": parse_machines(fleet), "record": record})), APP, direction="up")
    by = {f.id: f for f in plan.findings}
    assert by["scale-record-missing"].severity == "warning"
    assert "0000gone000000 iad" in by["scale-record-missing"].evidence
    assert "512 MB then, 1024 MB now" in by["scale-record-size-changed"].evidence[0]
    assert [r["id"] for r in plan.start] == [fleet[0]["id"], fleet[1]["id"]]
    with pytest.raises(Exception, match="direction must be"):
        scale_down.assess(data, APP, direction="sideways")


def test_machine_update_refuses_a_partial_config(tmp_path):
    """A machine on an unreachable host has only incomplete_config: sending it back would lose
    settings, so machine.update refuses without a mutating request."""
    from opslib.actions import Action, ApplyContext
    from opslib.errors import OpsError
    from opslib.executors import EXECUTORS

    m = _fleet(NEW, "3", n=1)[0]
    m["host_status"] = "unreachable"
    m["incomplete_config"] = m.pop("config")
    with FlyMachinesStandIn(TOKEN, {APP: [m]}) as fly:
        ctx = ApplyContext(Session("live"), Target(
            "live", APP, "", environ={"FLY_API_TOKEN": TOKEN, "FLY_FLAPS_BASE_URL": fly.url}))
        action = Action("u", "machine.update", "t", "c", {}, params={
            "machine_id": m["id"], "config_patch": {"guest": {"memory_mb": 1024}}})
        with pytest.raises(OpsError, match="partial config"):
            EXECUTORS["machine.update"](ctx, action)
        assert fly.mutations == []


@pytest.mark.parametrize("case", ["missing-app", "foreign-token"])
def test_bad_app_or_token_is_a_finding_in_every_fly_runbook(case):
    """The same checks as the notebook test above, at function level for the other three."""
    with FlyMachinesStandIn(TOKEN, {APP: _fleet(NEW, "3")}, foreign_tokens=[FOREIGN]) as fly, \
            FlyApiStandIn(TOKEN, {APP: {"releases": _releases()}}, foreign_tokens=[FOREIGN]) as api:
        app_name, token = ("no-such-app", TOKEN) if case == "missing-app" else (APP, FOREIGN)
        target = Target("live", app_name, "http://127.0.0.1:9", environ={
            "FLY_API_TOKEN": token, "FLY_FLAPS_BASE_URL": fly.url, "FLY_API_BASE_URL": api.url})
        s = Session("live")
        d, _ = rollback.decide(releases.collect(s, target, probes=0), app_name, s.now(),
                               dict(THRESHOLDS), target.health_url)
        sd = scale_down.assess(scale_down.collect(s, target), app_name)
        t, _ = tls.assess(tls.collect(s, target, hostnames=["www.example.test"], port=9,
                                      timeout=1), app_name, s.now())
        assert fly.mutations == [] and api.mutations == []
    for found in (d.findings, sd.findings, t):
        errors = [f for f in found if "error" in f.id]
        assert errors, [f.id for f in found]
        for f in errors:
            if case == "missing-app":
                assert f.severity == "critical" and "not found" in f.title
                assert "fly apps list" in f.detail
            else:
                assert f.severity == "unknown" and "lacks permission" in f.title
                assert "fly tokens create" in f.detail
    assert rollback.plan_actions(d, rollback.machine_releases_frame(None), app_name) == []
    assert scale_down.plan_actions(sd, app_name) == []
    if case == "missing-app":  # not "www… is not configured on app no-such-app"
        assert not [f for f in t if f.id.startswith("tls-not-configured")]


def test_machine_update_sends_the_full_config_with_the_patch_and_waits():
    """What the memory runbook's VM-size change relies on: a partial patch, the full config
    sent back, and a wait until the machine is started on its new version."""
    from opslib.actions import Action, ApplyContext
    from opslib.executors import EXECUTORS

    m = _fleet(NEW, "3", n=1)[0]
    m["config"]["env"] = {"PORT": "8080"}
    with FlyMachinesStandIn(TOKEN, {APP: [m]}) as fly:
        ctx = ApplyContext(Session("live"), Target(
            "live", APP, "", environ={"FLY_API_TOKEN": TOKEN, "FLY_FLAPS_BASE_URL": fly.url}))
        action = Action("u", "machine.update", "t", "c", {}, params={
            "machine_id": m["id"], "config_patch": {"guest": {"memory_mb": 1024, "cpus": 2}}})
        result = EXECUTORS["machine.update"](ctx, action)
        assert [(r.method, r.path) for r in fly.mutations] == leased_update(APP, m["id"])
        sent = json.loads(fly.updates[0].body)["config"]
        assert sent["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 1024}
        assert sent["image"] == NEW and sent["env"] == {"PORT": "8080"}
        assert sent["metadata"]["fly_release_version"] == "3"
        wait = fly.requests[-1].path
        assert "/wait?" in wait and "state=started" in wait and "instance_id=" in wait
        assert result["state"] == "started" and result["config_patch"]["guest"]["cpus"] == 2
