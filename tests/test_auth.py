"""The auth runbook: demo scenarios through papermill; live runs against the Supabase gateway,
Management API and Fly secrets STAND-INS and a real local app server with a skewed clock;
the gated `fly secrets set` (values from the environment only); secrets never on disk."""
from __future__ import annotations

import base64
import json
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from opslib.config import Target
from opslib.escalation import escalation
from opslib.runbooks import auth
from opslib.session import Session
from opslib.sources.supabase import key_facts
from tests.conftest import clean_env, findings, only_run, run_dirs
from tests.inprocess import opslib_run
from tests.servers import LocalHTTPServer, Reply
from tests.standins.fly_api import FlyApiStandIn, log_attrs
from tests.standins.fly_machines import leased_update
from tests.standins.fly_secrets import FlySecretsStandIn
from tests.standins.supabase import SupabaseGatewayStandIn, SupabaseManagementStandIn, skew_dates

FLY_TOKEN = "fo1_AuthRunbookToken_abcdefghijklmnopqrstuvwxyz012"
SB_TOKEN = "sbp_" + "fedcba9876543210" * 2 + "76543210"
REF = "qrstuvwxyzabcdefghij"


def jwt(role: str, *, exp: int | None = None, sig: str = "c2lnbmF0dXJlLW5vdC12ZXJpZmllZA") -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    now = int(time.time())
    return ".".join([part({"alg": "HS256", "typ": "JWT"}),
                     part({"iss": "supabase", "ref": REF, "role": role, "iat": now - 86400,
                           "exp": exp if exp is not None else now + 10 * 365 * 86400}), sig])


ANON = jwt("anon")
NEW_ANON = jwt("anon", sig="YW5vdGhlci1zaWduYXR1cmUtb2Yta2V5")


def by_id(f: dict) -> dict[str, dict]:
    return {x["id"]: x for x in f["findings"]}


# ----------------------------------------------------------------------------- demo target
@pytest.mark.parametrize("scenario, expect", [
    ("clock-skew", {"severity": "critical", "level": 2, "key": ("clock-skew", "critical"),
                    "title": "app clock 120 s ahead of Supabase's", "actions": []}),
    ("missing-secret", {"severity": "critical", "level": 1,
                        "key": ("fly-secrets-missing", "critical"),
                        "title": "demo-app lacks the secret(s) SUPABASE_ANON_KEY",
                        "actions": ['fly secrets set SUPABASE_ANON_KEY="$SUPABASE_ANON_KEY" -a demo-app']}),
    ("healthy", {"severity": "ok", "level": 0, "key": ("clock-skew", "ok"),
                 "title": "app and Supabase clocks agree (+0.0 s)", "actions": []}),
])
def test_demo_scenarios(reports, scenario, expect):
    proc = opslib_run("run", "auth", "--scenario", scenario,
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    f = findings(run)
    assert (f["status"], f["severity"]) == ("ok", expect["severity"])
    key_id, key_sev = expect["key"]
    assert by_id(f)[key_id]["severity"] == key_sev
    assert by_id(f)[key_id]["title"] == expect["title"]
    assert by_id(f)["supabase-auth"]["severity"] == "ok"
    assert [a["command"] for a in f["actions"]] == expect["actions"]
    assert all(a["status"] == "planned" for a in f["actions"])
    assert f["escalation"]["level"] == expect["level"]
    if scenario == "missing-secret":
        action = f["actions"][0]
        assert action["params"] == {"names": ["SUPABASE_ANON_KEY"]}
        assert action["basis"]["value_digests"] == {"SUPABASE_ANON_KEY": "93e1b7c04fa2d865"}
    assert (run / "charts" / "auth-clocks.png").exists()
    assert (run / "charts" / "auth-over-time.png").read_bytes()[:4] == b"\x89PNG"
    found = by_id(f)
    if scenario == "clock-skew":
        # the logs confirm it: PostgREST refused iad's tokens as issued in the future
        logged = found["auth-logs-clock-skew"]
        assert logged["severity"] == "critical"
        assert logged["title"] == ("the logs confirm the skew: 75x tokens refused as issued in "
                                   "the future / not yet valid on 148ed193b95089 between 03:00 "
                                   "and 03:13 UTC")
        assert any("JWT issued at future" in e for e in logged["evidence"])
        assert found["logs.jwt_clock_skew"]["severity"] == "critical"
    elif scenario == "missing-secret":
        logged = found["auth-logs-api-key"]
        assert logged["severity"] == "critical"
        assert logged["title"].endswith("SUPABASE_ANON_KEY is not set")
        assert any("No API key found in request" in e for e in logged["evidence"])
    else:
        # a trickle of expired tokens is normal client behaviour: nothing raised
        assert found["logs.no_signals"]["severity"] == "ok"
        assert not [x for x in f["findings"] if x["id"].startswith(("auth-logs", "logs."))
                    and x["severity"] != "ok"]


# ----------------------------------------------------------------------------- live
PGRST303 = ('PostgREST error PGRST303: {"code":"PGRST303","details":null,"hint":null,'
            '"message":"JWT issued at future"}')


def skew_logs(n: int) -> list[dict]:
    """PostgREST refusing the app's tokens as issued in the future, ``n`` times in 4 min."""
    now = datetime.now(timezone.utc)
    return [log_attrs((now - timedelta(seconds=10 + 240 * k / n)).isoformat().replace("+00:00", "Z"),
                      PGRST303, instance="148ed193b95089") for k in range(n)]


@contextmanager
def world(*, keys: tuple[str, ...] = (ANON, NEW_ANON), app_skew: float = 0.0,
          secrets: dict[str, str] | None = None, app_body: dict | None = None,
          secret_fields: dict | None = None, bans: list[str] | None = None,
          logs: list[dict] | None = None) -> Iterator[tuple]:
    with ExitStack() as stack:
        gateway = stack.enter_context(SupabaseGatewayStandIn(*keys))
        body = app_body or {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()}
        app = stack.enter_context(LocalHTTPServer(lambda r: Reply(200, body)))
        skew_dates(app, app_skew)
        from opslib.demo.world import machine

        fly = stack.enter_context(FlySecretsStandIn(
            FLY_TOKEN, {"live-app": [machine("148ed193b95089", name="a", region="iad"),
                                     machine("3d8d9e1fe67e89", name="b", region="ams",
                                             state="stopped")]},
            {"live-app": secrets if secrets is not None else {"SUPABASE_URL": gateway.url}},
            extra_fields=secret_fields))
        api = stack.enter_context(SupabaseManagementStandIn(SB_TOKEN, {REF: {
            "bans": {"banned_ipv4_addresses": bans or []}}}))
        # the Fly platform API (logs) takes the same token as the Machines API
        fly.logs = stack.enter_context(FlyApiStandIn(FLY_TOKEN, {"live-app": {"logs": logs or []}}))
        yield gateway, app, fly, api


def _env(reports: Path, gateway, fly, api, **extra: str) -> dict[str, str]:
    return clean_env(**{"OPSLIB_REPORTS": str(reports), "SUPABASE_URL": gateway.url,
                        "SUPABASE_ANON_KEY": ANON, "FLY_API_TOKEN": FLY_TOKEN,
                        "FLY_FLAPS_BASE_URL": fly.url, "FLY_API_BASE_URL": fly.logs.url,
                        "SUPABASE_ACCESS_TOKEN": SB_TOKEN,
                        "SUPABASE_PROJECT_REF": REF, "SUPABASE_API_BASE_URL": api.url, **extra})


def test_live_skew_and_gated_secrets_set(reports):
    """A 2-minute app clock and a missing SUPABASE_ANON_KEY; `fly secrets set` is applied only
    with the digest of a plan made from the same environment value."""
    with world(app_skew=120, logs=skew_logs(24)) as (gateway, app, fly, api):
        base = ("run", "auth", "--app", "live-app", "--app-url", app.url)

        def latest() -> dict:
            return findings(max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns))

        env_a = _env(reports, gateway, fly, api)
        env_b = _env(reports, gateway, fly, api, SUPABASE_ANON_KEY=NEW_ANON)
        assert opslib_run(*base, "--incident", "a", env=env_a).returncode == 0
        plan = latest()
        found = by_id(plan)
        assert found["clock-skew"]["severity"] == "critical"
        assert found["clock-skew"]["title"] in {f"app clock {n} s ahead of Supabase's"
                                                for n in (119, 120, 121)}
        assert found["supabase-auth"]["severity"] == "ok"
        assert found["fly-secrets-missing"]["severity"] == "critical"
        assert found["anon-key"]["title"] == "SUPABASE_ANON_KEY carries role anon"
        assert found["network-bans"]["severity"] == "ok"
        # the logs confirm it: PostgREST refused the app's tokens as issued in the future
        assert found["auth-logs-clock-skew"]["severity"] == "critical"
        assert found["auth-logs-clock-skew"]["title"].startswith(
            "the logs confirm the skew: 24x tokens refused as issued in the future")
        assert found["logs.jwt_clock_skew"]["severity"] == "critical"
        assert fly.logs.mutations == [] and fly.logs.requests
        assert plan["escalation"]["level"] == 2
        assert [a["command"] for a in plan["actions"]] == [
            'fly secrets set SUPABASE_ANON_KEY="$SUPABASE_ANON_KEY" -a live-app']
        assert [(r.method, r.path) for r in fly.requests] == [("GET", "/v1/apps/live-app/secrets")]
        assert [r.headers["apikey"] for r in gateway.requests] == [ANON]
        assert api.mutations == []
        digest_a = plan["plan_digest"]
        first = max(run_dirs(reports), key=lambda p: p.stat().st_mtime_ns)
        proc = opslib_run("run", "auth", "--target", f"replay:{first}", "--incident", "replayed",
                          env=clean_env(OPSLIB_REPORTS=str(reports)))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        replayed = findings(next(p for p in run_dirs(reports) if p.parent.name == "replayed"))
        assert (replayed["findings"], replayed["actions"]) == (plan["findings"], plan["actions"])
        assert replayed["plan_digest"] == digest_a

        assert opslib_run(*base, "--incident", "b", env=env_b).returncode == 0
        digest_b = latest()["plan_digest"]
        assert digest_b != digest_a  # a changed value changes the plan

        # The confirmed plan was made from value A; the environment now holds B: refused.
        proc = opslib_run(*base, "--incident", "c", "--apply", "--confirm", digest_a, env=env_b)
        assert proc.returncode == 1
        assert latest()["apply"]["outcome"] == "refused"
        assert fly.mutations == [] and fly.received == []

        proc = opslib_run(*base, "--incident", "d", "--apply", "--confirm", digest_a, env=env_a)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        applied = latest()
        assert applied["apply"]["outcome"] == "applied"
        result = applied["actions"][0]["result"]
        assert result["secrets"][0]["name"] == "SUPABASE_ANON_KEY"
        # set, then deployed as `fly secrets set` does: each machine updated, under its lease,
        # pinned to the new secrets version; the stopped one stays stopped
        assert [(r.method, r.path) for r in fly.mutations] == [
            ("POST", "/v1/apps/live-app/secrets"),
            *leased_update("live-app", "148ed193b95089"), *leased_update("live-app", "3d8d9e1fe67e89")]
        bodies = [json.loads(r.body) for r in fly.updates]
        assert [b["min_secrets_version"] for b in bodies] == [result["version"]] * 2
        assert [b.get("skip_launch", False) for b in bodies] == [False, True]
        assert result["deployed"] == [
            {"machine_id": "148ed193b95089", "min_secrets_version": result["version"], "state": "started"},
            {"machine_id": "3d8d9e1fe67e89", "min_secrets_version": result["version"], "state": "stopped"}]
        assert [m["secrets_version"] for m in fly.apps["live-app"]] == [result["version"]] * 2
        assert fly.received == [{"SUPABASE_ANON_KEY": ANON}]  # exactly what the environment held
        assert fly.secrets["live-app"]["SUPABASE_ANON_KEY"] == ANON


def test_a_key_the_gateway_rejects_is_never_pushed():
    with world(keys=(NEW_ANON,), secrets={}) as (gateway, app, fly, api):
        environ = {"SUPABASE_URL": gateway.url, "SUPABASE_ANON_KEY": ANON, "FLY_API_TOKEN": FLY_TOKEN,
                   "FLY_FLAPS_BASE_URL": fly.url, "FLY_API_BASE_URL": fly.logs.url}
        session = Session("live")
        data = auth.collect(session, Target("live", "live-app", app.url, environ=environ))
        session.close()
    [health] = auth.assess_auth(data.auth)
    assert health.severity == "critical" and "Invalid API key" in health.title
    assert health.escalate == 0  # a wrong key is configuration, not an outage
    assert auth.plan_actions(data, "live-app") == []
    why = {f.id: f for f in auth.unplanned(data)}
    assert "did not pass the Auth health check" in why["cannot-plan-supabase_anon_key"].title


def test_missing_key_gets_no_api_key_from_the_gateway():
    with world() as (gateway, app, fly, api):
        environ = {"SUPABASE_URL": gateway.url}
        data = auth.collect(Session("live"), Target("live", "live-app", app.url, environ=environ))
    assert data.auth.status == 401
    [health] = auth.assess_auth(data.auth)
    assert "saw no API key" in health.title
    assert data.key["kind"] == "missing"


@pytest.mark.parametrize("key, expect_id, level", [
    (jwt("service_role"), "anon-key-privileged", 3),
    ("sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz", "anon-key-privileged", 3),
    (jwt("anon", exp=1_000_000_000), "anon-key-expired", 1),
    ("not.a.jwt", "anon-key-malformed", 1),
    ("sb_publishable_abcDEF123", "anon-key", 0),
])
def test_key_facts_and_escalation(key, expect_id, level):
    facts = key_facts(key, datetime.now(timezone.utc))
    assert key not in json.dumps(facts)  # the key itself is never part of the facts
    found = auth.assess_key(facts)
    assert [f.id for f in found] == [expect_id]
    assert escalation(found)["level"] == level


def test_network_bans_are_a_security_escalation():
    found = auth.assess_bans({"banned_ipv4_addresses": ["192.0.2.44"]}, None)
    assert found[0].severity == "warning" and found[0].escalate == 3
    assert escalation(found)["team"] == "Security Team"
    assert escalation(auth.assess_bans({"banned_ipv4_addresses": []}, None))["level"] == 0


def test_our_own_clock_is_not_blamed_on_the_app():
    from opslib.sources.supabase import GatewayCheck

    s = GatewayCheck("s", 200, 1.0, skew_s=-300.2, server_date="x")
    a = GatewayCheck("a", 200, 1.0, skew_s=-299.9, server_date="y")
    found = {f.id: f for f in auth.assess_clock_skew(s, a)}
    assert found["clock-skew"].severity == "ok"
    assert found["clock-skew-local"].severity == "info"
    assert escalation(list(found.values()))["level"] == 0


def test_management_api_refusals_name_what_to_check():
    from opslib.errors import SourceAuthError, SourceNotFound
    from opslib.sources.supabase import SupabaseManagement

    with SupabaseManagementStandIn(SB_TOKEN, {REF: {"bans": {}}, "zzzzzzzzzzzzzzzzzzzz": {}},
                                   visible=[REF]) as api:
        with pytest.raises(SourceAuthError) as exc:
            SupabaseManagement(Session("live"), "sbp_" + "0" * 40, REF, base_url=api.url).network_bans()
        assert "HTTP 401" in exc.value.message and "SUPABASE_ACCESS_TOKEN" in exc.value.hint
        with pytest.raises(SourceAuthError) as exc:
            SupabaseManagement(Session("live"), SB_TOKEN, "zzzzzzzzzzzzzzzzzzzz",
                               base_url=api.url).project()
        assert "HTTP 403" in exc.value.message and "organisation" in exc.value.hint
        with pytest.raises(SourceNotFound) as exc:
            SupabaseManagement(Session("live"), SB_TOKEN, "doesnotexist00000000",
                               base_url=api.url).project()
        assert "SUPABASE_PROJECT_REF" in exc.value.hint
        assert api.mutations == []


# ----------------------------------------------------------------------------- secrets
CANARY_PW = "CanaryDbPw-7f3a91"
CANARY_FLY = "fo1_CanaryFlyToken0123456789abcdefghijklmnopq"
CANARY_SBP = "sbp_" + "c0ffee00" * 5
CANARY_ANON = jwt("anon", sig="Q2FuYXJ5QW5vbktleVNpZ25hdHVyZTk5")
CANARY_IN_RESPONSE = jwt("service_role", sig="Q2FuYXJ5SW5SZXNwb25zZVNpZw")
CANARY_BEARER = "CanaryBearerInBody4242"
CANARY_DSN_PW = "CanaryDsnInBody9911"


def _assert_clean(run: Path, canaries: list[str]) -> None:
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) > 8
    for path in files:
        data = path.read_bytes()
        for canary in canaries:
            for form in {canary, canary.split(".")[-1]} if canary.count(".") == 2 else {canary}:
                assert form.encode() not in data, f"{form[:12]}… found in {path.relative_to(run)}"


def test_no_secret_reaches_the_run_folder(reports):
    body = {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat(),
            "debug": f"Authorization: Bearer {CANARY_BEARER}",
            "db": f"postgresql://app:{CANARY_DSN_PW}@db.internal:5432/app"}
    with world(keys=(CANARY_ANON,), app_body=body, secrets={"DATABASE_URL": "x"},
               secret_fields={"value": CANARY_IN_RESPONSE}) as (gateway, app, fly, api):
        env = _env(reports, gateway, fly, api, SUPABASE_ANON_KEY=CANARY_ANON,
                   FLY_API_TOKEN=CANARY_FLY, SUPABASE_ACCESS_TOKEN=CANARY_SBP,
                   DATABASE_URL=f"postgresql://postgres:{CANARY_PW}@127.0.0.1:5/postgres")
        fly.token = fly.logs.token = CANARY_FLY
        api.token = CANARY_SBP
        proc = opslib_run("run", "auth", "--app", "live-app", "--app-url", app.url, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = only_run(reports)
        f = findings(run)
        # The run really used the secrets: the gateway and both APIs accepted them.
        assert by_id(f)["supabase-auth"]["severity"] == "ok"
        assert by_id(f)["network-bans"]["severity"] == "ok"
        assert [a["kind"] for a in f["actions"]] == ["secrets.set"]
        assert {r.headers["apikey"] for r in gateway.requests} == {CANARY_ANON}
        for secret in (CANARY_PW, CANARY_FLY, CANARY_SBP, CANARY_ANON):
            assert secret not in proc.stdout + proc.stderr
    _assert_clean(run, [CANARY_PW, CANARY_FLY, CANARY_SBP, CANARY_ANON, CANARY_IN_RESPONSE,
                        CANARY_BEARER, CANARY_DSN_PW])
    raw = "".join(p.read_text() for p in (run / "raw").rglob("*.json"))
    assert "[REDACTED]" in raw
