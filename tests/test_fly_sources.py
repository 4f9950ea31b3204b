"""The Fly sources against real local servers: the Machines API and api.fly.io STAND-INS,
behind a fault proxy on 127.0.0.1 for the failure behaviour issue 3 requires."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from opslib.demo.world import exit_events, machine
from opslib.errors import (NotConfigured, SourceAuthError, SourceError, SourceNotFound,
                           SourceProtocolError, SourceRateLimited, SourceUnavailable)
from opslib.session import Session
from opslib.times import iso
from opslib.sources import http as http_source
from opslib.sources.fly import FlyMachines, certificates_frame, events_frame, merge_patch
from opslib.sources.fly_platform import RELEASES_QUERY, FlyPlatform, logs_frame, releases_frame
from tests.faultproxy import FaultProxy
from tests.standins.fly_api import FlyApiStandIn, log_attrs, rest_release
from tests.standins.fly_machines import FlyMachinesStandIn, new_certificate

TOKEN = "fo1_SourceTestToken_abcdefghijklmnopqrstuvwxyz0123"
MACAROON = "fm2_lJPECAAAAAAAAMmTxBB3cGQ0Y2FhZjlhZjE3NDVi,fm2_second_part_abcdefgh"
APP = "src-app"
IMG = f"registry.fly.io/{APP}:deployment-01JD7Q3K8X"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _machines() -> list[dict]:
    m1 = machine("148ed193b95089", name="a", region="iad",
                 events=exit_events(at=NOW - timedelta(minutes=5), code=137, oom=True, restarts=2))
    m2 = machine("3d8d9e1fe67e89", name="b", region="ams")
    # flyd may put the exit data under request.MonitorEvent (capitalised exactly like this).
    m2["events"] = [{"type": "exit", "status": "stopped", "source": "flyd",
                     "timestamp": int((NOW - timedelta(minutes=2)).timestamp() * 1000),
                     "request": {"MonitorEvent": {"exit_event": {
                         "exit_code": 137, "oom_killed": True, "requested_stop": False,
                         "exited_at": int((NOW - timedelta(minutes=2)).timestamp() * 1000)}},
                                 "restart_count": 4}}] + m2["events"]
    return [m1, m2]


def _certs(n: int = 3) -> dict[str, dict]:
    out = {}
    for i in range(n):
        host = f"h{i}.example.com"
        detail = new_certificate(host, APP)
        detail.update(status="active", configured=True)
        out[host] = detail
    return out


def _releases() -> list[dict]:
    t = NOW - timedelta(hours=1)
    return [rest_release(43, status="complete", image=IMG.replace("01JD7Q3K8X", "01JD9ZZZZ"),
                         created_at=iso(t)),
            rest_release(42, status="complete", image=IMG, created_at=iso(t - timedelta(days=1))),
            rest_release(41, status="failed", stable=False, image=IMG.replace("3K8X", "0000"),
                         created_at=iso(t - timedelta(days=2)))]


def _logs(n: int = 25, start: datetime | None = None) -> list[dict]:
    start = start or NOW - timedelta(minutes=30)
    return [log_attrs(iso(start + timedelta(seconds=60 * i)).replace("Z", ".123456789Z"),
                      f"GET /api/items 200 line {i}", instance="148ed193b95089" if i % 2 else "3d8d9e1fe67e89")
            for i in range(n)]


@pytest.fixture
def flaps():
    with FlyMachinesStandIn(TOKEN, {APP: _machines()}, certificates={APP: _certs()},
                            readonly_tokens=["fo1_ReadOnlyToken_abcdefghijklmnopqrstuvwxyz012"],
                            foreign_tokens=["fo1_ForeignToken_abcdefghijklmnopqrstuvwxyz0123"]) as s:
        yield s


@pytest.fixture
def api():
    with FlyApiStandIn(TOKEN, {APP: {"releases": _releases(), "logs": _logs()}},
                       page_size=10) as s:
        yield s


def _fly(url: str, *, token: str = TOKEN, app: str = APP, timeout: float | None = None,
         session: Session | None = None) -> FlyMachines:
    return FlyMachines(session or Session("live"), app, token=token, base_url=url, timeout=timeout)


def _platform(url: str, *, token: str = TOKEN, app: str = APP, timeout: float | None = None,
              session: Session | None = None) -> FlyPlatform:
    return FlyPlatform(session or Session("live"), app, token=token, base_url=url, timeout=timeout)


# ----------------------------------------------------------------------------- Machines API reads
def test_machine_events_and_both_exit_event_capitalisations(flaps):
    fly = _fly(flaps.url)
    assert fly.get_machine("148ed193b95089").region == "iad"
    events = {mid: fly.events(mid, limit=500) for mid in ("148ed193b95089", "3d8d9e1fe67e89")}
    # limit is clamped to the API's maximum of 50 (the stand-in refuses more)
    assert [r.path.split("?")[1] for r in flaps.requests if "/events" in r.path] == ["limit=50"] * 2
    df = events_frame(events)
    exits = df[df["type"] == "exit"]
    assert sorted(exits["machine"]) == ["148ed193b95089", "3d8d9e1fe67e89"]
    assert exits["oom_killed"].all() and set(exits["exit_code"]) == {137}
    assert df.iloc[0]["machine"] == "3d8d9e1fe67e89"  # newest first across machines
    assert int(exits.set_index("machine").loc["3d8d9e1fe67e89", "restart_count"]) == 4
    assert flaps.mutations == []


def test_macaroon_tokens_use_the_flyv1_scheme():
    with FlyMachinesStandIn(MACAROON, {APP: _machines()}) as s:
        assert len(_fly(s.url, token=MACAROON).list_machines()) == 2
        assert s.requests[0].headers["authorization"] == f"FlyV1 {MACAROON}"


def test_wait_reports_reached_and_not_reached(flaps):
    fly = _fly(flaps.url)
    assert fly.wait("148ed193b95089", "started") == {"ok": True}
    with pytest.raises(SourceError) as exc:
        fly.wait("148ed193b95089", "stopped", timeout_s=5)
    assert exc.value.status == 408 and "deadline_exceeded" in exc.value.message
    assert "timeout=5" in flaps.requests[-1].path and flaps.mutations == []


def test_certificates_list_follows_cursor_pages_and_detail(flaps):
    fly = _fly(flaps.url)
    certs = fly.list_certificates(page_size=2)
    assert certs.hostnames == ["h0.example.com", "h1.example.com", "h2.example.com"]
    assert (certs.pages, certs.total_count, certs.truncated) == (2, 3, False)
    df = certificates_frame(certs.certificates)
    assert list(df["status"]) == ["active"] * 3 and df["configured"].all()
    detail = fly.certificate("h1.example.com")
    assert detail.dns_requirements.cname == f"{APP}.fly.dev"
    with pytest.raises(SourceNotFound) as exc:
        fly.certificate("not-configured.example.com")
    assert "not-configured.example.com not found" in exc.value.message
    assert flaps.mutations == []


def test_certificates_page_cap(flaps):
    certs = _fly(flaps.url).list_certificates(page_size=1, max_pages=2)
    assert (certs.pages, certs.truncated, len(certs.certificates)) == (2, True, 2)


def test_merge_patch_is_rfc7396():
    config = {"image": "a", "guest": {"cpus": 1, "memory_mb": 256}, "env": {"X": "1"}}
    out = merge_patch(config, {"guest": {"memory_mb": 1024}, "env": None, "image": "b"})
    assert out == {"image": "b", "guest": {"cpus": 1, "memory_mb": 1024}}
    assert config["guest"]["memory_mb"] == 256  # the input is not modified


# ----------------------------------------------------------------------------- failure behaviour
def test_slow_response_past_the_timeout_is_a_timeout_error(flaps):
    with FaultProxy(flaps.url) as proxy:
        proxy.add("delay", seconds=2.0)
        with pytest.raises(SourceUnavailable) as exc:
            _fly(proxy.url, timeout=0.5).list_machines()
    assert exc.value.kind == "timeout" and "did not answer" in exc.value.hint
    assert len(proxy.seen) == 1  # a timeout is not retried: the next try would hang as long


@pytest.mark.parametrize("fault", ["reset_mid_body", "truncate_body"])
def test_connection_cut_mid_body_is_retried_then_reported(flaps, fault):
    with FaultProxy(flaps.url) as proxy:
        proxy.add(fault, times=1)
        assert len(_fly(proxy.url).list_machines()) == 2  # the retry got a whole answer
        assert len(proxy.seen) == 2
        proxy.add(fault, times=0)
        with pytest.raises(SourceUnavailable) as exc:
            _fly(proxy.url).list_machines()
    assert exc.value.kind == "reset"
    assert len(proxy.seen) == 2 + 3  # bounded: one try and two retries


@pytest.mark.parametrize("body, text", [
    ('[{"id": "148ed193b95089", "state": "sta', "invalid JSON"),
    ("<html><body>502 Bad Gateway</body></html>", "invalid JSON"),
])
def test_truncated_or_malformed_json_is_a_protocol_error(flaps, body, text):
    with FaultProxy(flaps.url) as proxy:
        proxy.add("respond", status=200, body=body, headers={"content-type": "application/json"})
        with pytest.raises(SourceProtocolError) as exc:
            _fly(proxy.url).list_machines()
    assert text in exc.value.message and "base URL" in exc.value.hint
    assert len(proxy.seen) == 1


def test_401_and_403_carry_the_platform_error_body(flaps):
    with pytest.raises(SourceAuthError) as exc:
        _fly(flaps.url, token="fo1_WrongToken_abcdefghijklmnopqrstuvwxyz01234").list_machines()
    assert exc.value.status == 401 and "You must be authenticated" in exc.value.message
    with pytest.raises(SourceAuthError) as exc:
        _fly(flaps.url, token="fo1_ForeignToken_abcdefghijklmnopqrstuvwxyz0123").list_machines()
    assert exc.value.status == 403 and f"no access to app {APP}" in exc.value.message
    assert "permissions" in exc.value.hint
    assert len(flaps.requests) == 2  # auth failures are not retried


def test_404_app_not_found(flaps, api):
    with pytest.raises(SourceNotFound) as exc:
        _fly(flaps.url, app="no-such-app").list_machines()
    assert "app no-such-app not found" in exc.value.message and "app" in exc.value.hint
    with pytest.raises(SourceNotFound) as exc:
        _platform(api.url, app="no-such-app").releases()
    assert 'Could not find App "no-such-app"' in exc.value.message  # REST 404, then GraphQL


def test_429_honours_retry_after(flaps, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(http_source.time, "sleep", slept.append)
    with FaultProxy(flaps.url) as proxy:
        proxy.add("respond", status=429, body={"error": "rate limited"},
                  headers={"retry-after": "3"}, times=1)
        assert len(_fly(proxy.url).list_machines()) == 2
        assert slept == [3.0] and len(proxy.seen) == 2
        proxy.add("respond", status=429, body={"error": "rate limited"},
                  headers={"retry-after": "1"}, times=0)
        with pytest.raises(SourceRateLimited) as exc:
            _fly(proxy.url).list_machines()
    assert exc.value.status == 429 and "rate limited" in exc.value.message
    assert slept == [3.0, 1.0, 1.0]


def test_500s_are_retried_a_few_times(flaps, monkeypatch):
    monkeypatch.setattr(http_source.time, "sleep", lambda s: None)
    with FaultProxy(flaps.url) as proxy:
        proxy.add("respond", status=500, body={"error": "internal error"}, times=2)
        assert len(_fly(proxy.url).list_machines()) == 2
        assert len(proxy.seen) == 3
        proxy.add("respond", status=503, body={"error": "upstream unavailable"}, times=0)
        with pytest.raises(SourceUnavailable) as exc:
            _fly(proxy.url).list_machines()
    assert exc.value.status == 503 and "upstream unavailable" in exc.value.message
    assert len(proxy.seen) == 6


def test_mutating_calls_are_never_retried(flaps):
    with FaultProxy(flaps.url) as proxy:
        proxy.add("respond", status=500, body={"error": "boom"}, method="POST", times=0)
        with pytest.raises(SourceUnavailable):
            _fly(proxy.url).restart("148ed193b95089")
    assert len(proxy.seen) == 1


def test_no_token_is_not_configured():
    with pytest.raises(NotConfigured) as exc:
        FlyPlatform(Session("live"), APP, token="", base_url="http://127.0.0.1:9")
    assert exc.value.needs == "FLY_API_TOKEN"


# ----------------------------------------------------------------------------- releases
def test_releases_over_rest(api):
    rel = _platform(api.url).releases(limit=2)
    assert rel.source == "rest" and [r.version for r in rel.releases] == [43, 42]
    assert api.requests[0].path == f"/api/v1/apps/{APP}/releases?limit=2"
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    df = releases_frame(rel.releases)
    assert list(df["status"]) == ["complete", "complete"]


def test_releases_fall_back_to_graphql_with_the_reference_query():
    with FlyApiStandIn(TOKEN, {APP: {"releases": _releases()}}, rest=False) as api:
        rel = _platform(api.url).releases(limit=3)
        assert rel.source == "graphql" and "not_found" in rel.fallback_reason
        assert [r.version for r in rel.releases] == [43, 42, 41]
        assert rel.releases[2].status == "failed" and not rel.releases[2].stable
        assert rel.releases[0].user == "dev@example.com"
        sent = json.loads(api.requests[1].body)
        assert sent == {"query": RELEASES_QUERY, "variables": {"appName": APP, "limit": 3}}
        assert api.mutations == []


def test_releases_malformed_rest_falls_back(api):
    with FaultProxy(api.url) as proxy:
        proxy.add("respond", path="/releases", status=200, body={"unexpected": True})
        rel = _platform(proxy.url).releases()
    assert rel.source == "graphql" and "protocol" in rel.fallback_reason


def test_releases_auth_error_is_not_retried_on_graphql(api):
    with pytest.raises(SourceAuthError):
        _platform(api.url, token="fo1_WrongToken_abcdefghijklmnopqrstuvwxyz01234").releases()
    assert [r.path.split("?")[0] for r in api.requests] == [f"/api/v1/apps/{APP}/releases"]


# ----------------------------------------------------------------------------- logs
def test_logs_page_until_the_window_is_covered(api, tmp_path):
    session = Session("record", raw_dir=tmp_path / "raw", now=NOW)
    stream = _platform(api.url, session=session).logs(since=NOW - timedelta(minutes=30))
    entries = list(stream)
    assert len(entries) == 25 and stream.pages == 4 and not stream.truncated
    assert stream.stop_reason == "caught up (empty page)"
    assert entries[0]["message"] == "GET /api/items 200 line 0"
    assert entries[1]["provider"] == "app" and entries[1]["instance"] == "148ed193b95089"
    first = api.requests[0].path
    assert "next_token=" in first  # the window's start, in ns
    pages = sorted((tmp_path / "raw" / "http").glob("*.json"))
    assert len(pages) == 4
    df = logs_frame(entries)
    assert df["timestamp"].is_monotonic_increasing and df["timestamp"].dt.tz is not None


def test_logs_stream_pages_to_raw_as_they_arrive(api, tmp_path):
    session = Session("record", raw_dir=tmp_path / "raw", now=NOW)
    it = iter(_platform(api.url, session=session).logs(since=NOW - timedelta(minutes=30)))
    next(it)
    assert len(list((tmp_path / "raw" / "http").glob("*.json"))) == 1  # one page, on disk
    for _ in range(10):
        next(it)
    assert len(list((tmp_path / "raw" / "http").glob("*.json"))) == 2


def test_logs_window_end_stops_paging(api):
    since = NOW - timedelta(minutes=30)
    stream = _platform(api.url).logs(since=since, until=since + timedelta(minutes=12, seconds=30))
    entries = list(stream)
    assert len(entries) == 13 and stream.pages == 2 and stream.stop_reason == "window covered"


def test_logs_integer_next_token_and_filters():
    with FlyApiStandIn(TOKEN, {APP: {"releases": [], "logs": _logs()}}, page_size=5,
                       int_tokens=True) as api:
        stream = _platform(api.url).logs(since=NOW - timedelta(hours=1),
                                         instance="148ed193b95089")
        entries = list(stream)
    assert len(entries) == 12 and {e["instance"] for e in entries} == {"148ed193b95089"}
    assert all("instance=148ed193b95089" in r.path for r in api.requests)


def test_logs_pagination_that_never_ends_is_capped():
    with FlyApiStandIn(TOKEN, {APP: {"releases": [], "logs": _logs(1)}}, endless=True) as api:
        stream = _platform(api.url).logs(since=NOW - timedelta(hours=1), max_pages=7)
        entries = list(stream)
    assert stream.truncated and stream.pages == 7 and len(api.requests) == 7
    assert len(entries) == 7 and "page cap (7)" in stream.stop_reason


def test_a_busy_window_past_the_page_cap_keeps_the_newest_lines_and_names_the_gap():
    """The real logs API pages 100 lines at a time (the stand-in too). 3,000 lines in 30
    minutes need 30 pages; with 8 the newest minutes — the incident — must still be read."""
    from opslib.assess.recent_logs import fetch_findings
    from opslib.reads import Reading

    start = NOW - timedelta(minutes=30)
    busy = [log_attrs(iso(start + timedelta(seconds=0.6 * i)), f"GET / 200 line {i}")
            for i in range(3000)]
    with FlyApiStandIn(TOKEN, {APP: {"releases": [], "logs": busy}}, page_size=100) as api:
        window = _platform(api.url).read_logs(since=start, until=NOW, max_pages=8)
    messages = [e["message"] for e in window.entries]
    assert window.pages == 8 and window.truncated
    assert messages[0] == "GET / 200 line 0" and messages[-1] == "GET / 200 line 2999"
    assert len(messages) == len(set(messages)) <= 800
    (gap_from, gap_to), = window.unread
    assert start < gap_from < gap_to < NOW
    f, = [x for x in fetch_findings(Reading("logs", "logs", "Fly logs API", "measured",
                                            value=window)) if x.id == "logs-truncated"]
    assert f.severity == "warning" and f"{gap_from:%H:%M:%S}–{gap_to:%H:%M:%S}" in f.title
    assert f.evidence == [f"not read: {gap_from.isoformat()} → {gap_to.isoformat()}"]


def test_logs_malformed_page_is_a_protocol_error(api):
    with FaultProxy(api.url) as proxy:
        proxy.add("respond", path="/logs", status=200, body={"data": "nope"})
        with pytest.raises(SourceProtocolError):
            list(_platform(proxy.url).logs())


# ----------------------------------------------------------------------------- replay
def test_recorded_reads_replay_identically(flaps, api, tmp_path):
    raw = tmp_path / "raw"
    with Session("record", raw_dir=raw, now=NOW) as live:
        fly, plat = _fly(flaps.url, session=live), _platform(api.url, session=live)
        before = (fly.list_machines(), fly.events("148ed193b95089"),
                  fly.list_certificates().hostnames, plat.releases().releases,
                  list(plat.logs(since=NOW - timedelta(minutes=30))))
    with Session("replay", capture_dir=raw) as replay:
        fly = FlyMachines(replay, APP, token="", base_url="http://unused.invalid")
        plat = FlyPlatform(replay, APP, token="", base_url="http://unused.invalid")
        after = (fly.list_machines(), fly.events("148ed193b95089"),
                 fly.list_certificates().hostnames, plat.releases().releases,
                 list(plat.logs(since=NOW - timedelta(minutes=30))))
    assert after == before
    recorded = [json.loads(p.read_text()) for p in sorted((raw / "http").glob("*.json"))]
    assert all(r["request"]["headers"]["authorization"] == "[REDACTED]" for r in recorded)
    assert TOKEN not in "".join(p.read_text() for p in Path(raw).rglob("*.json"))


def test_canary_tokens_in_log_lines_and_responses_never_reach_raw(tmp_path):
    canary = "fo1_CanaryInALogLine_abcdefghijklmnopqrstuvwxyz01"
    macaroon = "FlyV1 fm2_CanaryMacaroonInARelease_abcdefghijklmnop"
    logs = _logs(3) + [log_attrs(iso(NOW - timedelta(minutes=1)).replace("Z", ".5Z"),
                                 f"retrying upstream with Authorization: Bearer {canary}")]
    releases = _releases()
    releases[0]["user"] = f"ci ({macaroon})"
    with FlyApiStandIn(TOKEN, {APP: {"releases": releases, "logs": logs}}) as api:
        session = Session("record", raw_dir=tmp_path / "raw", now=NOW)
        plat = _platform(api.url, session=session)
        entries = list(plat.logs(since=NOW - timedelta(minutes=40)))
        plat.releases()
    assert any(canary in e["message"] for e in entries)  # the analysis sees the line…
    files = [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]
    assert len(files) >= 3
    for path in files:  # …but no byte of it reaches the evidence
        data = path.read_bytes()
        for needle in (canary, macaroon.split()[1], TOKEN):
            assert needle.encode() not in data, (needle[:12], path.name)
