"""The Prometheus source and the PromQL catalogue, against the Prometheus STAND-IN on 127.0.0.1."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pandas as pd
import pytest

from opslib import promql
from opslib.config import Target
from opslib.reads import gather
from opslib.errors import (PrometheusQueryError, NotConfigured, SourceAuthError, SourceNotFound, SourceProtocolError,
                           SourceRateLimited, SourceUnavailable, UsageError)
from opslib.session import Session
from opslib.sources import prometheus as prom
from tests.servers import LocalHTTPServer, Reply
from tests.standins.prometheus import PrometheusStandIn

TOKEN = "fo1_PromReadToken_abcdefghijklmnopqrstuvwxyz0123456"
NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
APP = "shop-app"
Q = promql.queries(APP, window="1h")


def mem_a(t: float) -> float:
    return 40 + (t % 3600) / 360  # 40..50 %


FIXTURE = {
    Q["memory_pct"]: [({"app": APP, "instance": "m1", "region": "iad"}, mem_a),
                      ({"app": APP, "instance": "m2", "region": "ams"},
                       lambda t: float("nan") if t % 1800 == 30 else 61.5)],
    Q["oom_exits"]: [({"instance": "m1"}, lambda t: 1.0)],
    Q["p95_latency_ms"]: [({}, lambda t: 180.0)],
}


def client(stand: PrometheusStandIn, session: Session | None = None, token: str = TOKEN,
           **kw) -> prom.Prometheus:
    return prom.Prometheus(session or Session("live"), stand.base, token=token, **kw)


# ----------------------------------------------------------------------------- PromQL catalogue
def test_every_seed_metric_has_one_query_with_reference_names():
    assert {"memory_pct", "cpu_pct", "error_rate_pct", "p95_latency_ms", "oom_exits",
            "concurrency"} <= set(promql.QUERIES)
    q = promql.queries("my-app", rate="2m", window="3h")
    assert q["memory_pct"] == ('100 * (1 - fly_instance_memory_mem_available{app="my-app"} '
                               '/ fly_instance_memory_mem_total{app="my-app"})')
    assert "[2m]" in q["error_rate_pct"] and 'status=~"5.."' in q["error_rate_pct"]
    assert "fly_edge_http_response_time_seconds_bucket" in q["p95_latency_ms"]
    assert "max_over_time(fly_instance_exit_oom{app=\"my-app\"}[3h])" in q["oom_exits"]
    assert "{app}" not in "".join(q.queries.values())


def test_overrides_replace_queries_by_name_for_another_prometheus():
    q = promql.queries("my-app", overrides={
        "memory_pct": '100 * node_memory_used_ratio{job="{app}", env="prod"}'})
    assert q["memory_pct"] == '100 * node_memory_used_ratio{job="my-app", env="prod"}'
    assert q.overridden == {"memory_pct"}
    assert q["cpu_pct"] == promql.queries("my-app")["cpu_pct"]


@pytest.mark.parametrize("overrides, message", [
    ({"memroy_pct": "x"}, "unknown query 'memroy_pct'"),
    ({"memory_pct": ""}, "non-empty PromQL"),
    ({"memory_pct": 'm{job="{job}"}'}, "unknown placeholder(s) {job}"),
])
def test_bad_overrides_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        promql.queries("a", overrides=overrides)


def test_durations():
    assert promql.parse_duration("90s") == 90
    assert promql.parse_duration("6h") == 6 * 3600
    for bad in ("", "6", "h", "0m", "-5m", "1.5h", "5 minutes"):
        with pytest.raises(UsageError):
            promql.parse_duration(bad)


def test_app_names_are_escaped_as_promql_strings():
    assert promql.render('x{app="{app}"}', app='a"b\\c') == 'x{app="a\\"b\\\\c"}'


# ----------------------------------------------------------------------------- tidy frames
def test_tidy_matrix_vector_scalar():
    m = prom.tidy({"resultType": "matrix", "result": [
        {"metric": {"__name__": "up", "instance": "b"}, "values": [[10, "1"], [20, "NaN"]]},
        {"metric": {"instance": "a", "region": "iad"}, "values": [[10, "+Inf"]]}]})
    assert list(m.frame.columns) == ["timestamp", "instance", "metric", "region", "value"]
    assert list(m.frame["instance"]) == ["a", "b", "b"]
    assert m.frame["region"].tolist() == ["iad", "", ""]
    assert math.isinf(m.frame["value"][0]) and math.isnan(m.frame["value"][2])
    assert m.frame["timestamp"][1] == pd.Timestamp(10, unit="s", tz="UTC")
    v = prom.tidy({"resultType": "vector", "result": [{"metric": {}, "value": [5.5, "2"]}]})
    assert v.frame["value"].tolist() == [2.0] and v.labels == []
    s = prom.tidy({"resultType": "scalar", "result": [7, "3.5"]})
    assert s.frame["value"].tolist() == [3.5]
    e = prom.tidy({"resultType": "vector", "result": []})
    assert e.empty and list(e.frame.columns) == ["timestamp", "value"]


@pytest.mark.parametrize("data", [{}, {"resultType": "matrix", "result": None},
                                  {"resultType": "vector", "result": [{"metric": {}}]},
                                  {"resultType": "table", "result": []}])
def test_tidy_rejects_shapes_that_are_not_prometheus(data):
    with pytest.raises(SourceProtocolError, match="not a Prometheus result"):
        prom.tidy(data)


def test_range_ends_at_now_so_the_freshest_sample_is_read_and_is_bounded():
    start, end, step = prom.aligned_range(NOW, "1h", "1m")
    assert (end, step) == (NOW.timestamp(), 60)  # 12:00:30, not rounded down to 12:00
    assert end - start == 3600
    later = NOW.replace(microsecond=700_000)
    assert prom.aligned_range(later, "1h", "1m") == (start, end, step)  # whole seconds
    with pytest.raises(UsageError, match="11000"):
        prom.aligned_range(NOW, "30d", "1m")
    with pytest.raises(UsageError, match="at least 1s"):
        prom.aligned_range(NOW, "1h", "500ms")


# ----------------------------------------------------------------------------- live queries
def test_range_and_instant_queries_return_tidy_frames():
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        c = client(stand)
        start, end, step = prom.aligned_range(NOW, "1h", "5m")
        r = c.query_range(Q["memory_pct"], start=start, end=end, step=step, name="memory_pct")
        assert (r.name, r.result_type) == ("memory_pct", "matrix")
        assert r.labels == ["app", "instance", "region"]
        m1 = r.frame[r.frame["instance"] == "m1"]
        assert len(m1) == 13
        assert m1["timestamp"].iloc[-1] == pd.Timestamp(end, unit="s", tz="UTC")
        assert m1["value"].iloc[-1] == pytest.approx(mem_a(end))
        m2 = r.frame[r.frame["instance"] == "m2"]["value"]
        assert m2.isna().sum() == 3 and (m2.dropna() == 61.5).all()  # NaN kept, not dropped
        i = c.query(Q["oom_exits"], at=NOW, name="oom_exits")
        assert i.result_type == "vector" and i.frame["value"].tolist() == [1.0]
        sent = stand.queries
        assert sent[0] == {"query": Q["memory_pct"], "start": f"{start:.0f}", "end": f"{end:.0f}",
                           "step": "300"}
        assert sent[1] == {"query": Q["oom_exits"], "time": f"{NOW.timestamp():.0f}"}
        assert [r.headers["authorization"] for r in stand.requests] == [f"Bearer {TOKEN}"] * 2
        assert [r.path.split("?")[0] for r in stand.requests] == [
            "/prometheus/personal/api/v1/query_range", "/prometheus/personal/api/v1/query"]
        assert stand.mutations == []


def test_macaroon_tokens_use_the_flyv1_scheme():
    token = "fm2_lJPECAAAAAAAAZyCxBBWtestmacaroon0123456789abcdef"
    with PrometheusStandIn(token, FIXTURE) as stand:
        client(stand, token=token).query(Q["oom_exits"], at=NOW)
        assert stand.requests[0].headers["authorization"] == f"FlyV1 {token}"


def test_unknown_metric_is_an_explicit_no_data_outcome():
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        r = client(stand).query(Q["cpu_pct"], at=NOW, name="cpu_pct")
    assert r.empty
    f = prom.no_data_finding(r, app=APP, window="1h", what="CPU usage")
    assert f.severity == "unknown" and f.id == "no-data-cpu-pct"
    assert "no data from Prometheus for CPU usage over the last 1h" == f.title
    for hint in (repr(APP), "FLY_ORG", 'promql={"cpu_pct"', stand.base):
        assert hint in f.detail
    assert f.evidence == [f"query: {Q['cpu_pct']}"]


def test_bad_query_is_a_typed_bad_data_error_and_not_retried():
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        with pytest.raises(PrometheusQueryError) as info:
            client(stand).query('sum(rate(fly_edge_http_responses_count{app="x"}[5m])', at=NOW,
                                name="broken")
        assert len(stand.requests) == 1
    exc = info.value
    assert (exc.kind, exc.status, exc.system) == ("bad_data", 400, "prometheus")
    assert "parse error: unclosed left parenthesis" in exc.message
    assert "check the PromQL" in exc.hint
    f = prom.error_finding("broken", exc, what="memory")
    assert f.severity == "unknown" and "bad_data" in f.title


def test_a_series_younger_than_a_step_is_read_not_no_data():
    """A machine that started 40 s ago has samples only after NOW-40s: with a 2-minute step
    ending at NOW rounded down (12:00:00) there was no point after it, and the runbook said
    "no data"."""
    young = {Q["memory_pct"]: [({"instance": "new"},
                                lambda t: 55.0 if t >= NOW.timestamp() - 40 else None)]}
    with PrometheusStandIn(TOKEN, young) as stand:
        start, end, step = prom.aligned_range(NOW, "1h", "2m")
        r = client(stand).query_range(Q["memory_pct"], start=start, end=end, step=step)
    assert not r.empty and r.frame["value"].tolist()[-1] == 55.0
    assert r.frame["timestamp"].iloc[-1] == pd.Timestamp(NOW)


@pytest.mark.parametrize("query, status, kind, hint", [
    ('sum(rate(x[5m])', 422, "bad_data", "check the PromQL"),  # cannot parse
])
def test_victoriametrics_errors_carry_the_status_as_error_type_and_get_the_right_hint(
        query, status, kind, hint):
    """Fly's managed metrics are VictoriaMetrics: ``errorType`` is "422", not "bad_data"."""
    with PrometheusStandIn(TOKEN, FIXTURE, flavour="victoriametrics") as stand:
        with pytest.raises(PrometheusQueryError) as info:
            client(stand).query(query, at=NOW)
        assert stand.requests and len(stand.requests) == 1
    assert (info.value.kind, info.value.status) == (kind, status)
    assert hint in info.value.hint
    for error_type, code, expected in (("422", 422, "bad_data"), ("400", 400, "bad_data"),
                                       ("503", 503, "unavailable"), ("504", 504, "timeout"),
                                       ("500", 500, "internal"), ("execution", 422, "execution")):
        assert prom.error_kind(error_type, code) == expected


def test_execution_error_envelope_is_typed():
    body = {"status": "error", "errorType": "execution",
            "error": "query processing would load too many samples into memory"}
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        stand.fail_next(Reply(422, body))
        with pytest.raises(PrometheusQueryError) as info:
            client(stand).query(Q["oom_exits"], at=NOW)
    assert info.value.kind == "execution" and "too many samples" in info.value.message


def test_error_envelope_with_http_200_is_still_an_error():
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        stand.fail_next(Reply(200, {"status": "error", "errorType": "timeout",
                                    "error": "query timed out in expression evaluation"}))
        with pytest.raises(PrometheusQueryError) as info:
            client(stand).query(Q["oom_exits"], at=NOW)
    assert info.value.kind == "timeout" and "shorten the window" in info.value.hint


def test_5xx_is_retried_then_answers():
    unavailable = Reply(503, {"status": "error", "errorType": "unavailable",
                              "error": "Service Unavailable"})
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        stand.fail_next(unavailable, unavailable)
        r = client(stand).query(Q["oom_exits"], at=NOW)
        assert r.frame["value"].tolist() == [1.0]
        assert len(stand.requests) == 3
        stand.fail_next(unavailable, unavailable, unavailable)
        with pytest.raises(SourceUnavailable, match="HTTP 503: Service Unavailable"):
            client(stand).query(Q["oom_exits"], at=NOW)
        assert len(stand.requests) == 6


def test_429_honours_retry_after(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("opslib.sources.http.time.sleep", slept.append)
    limited = Reply(429, {"error": "rate limited"}, headers={"retry-after": "3"})
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        stand.fail_next(limited)
        assert not client(stand).query(Q["oom_exits"], at=NOW).empty
        assert slept == [3.0]
        stand.fail_next(limited, limited, limited)
        with pytest.raises(SourceRateLimited):
            client(stand).query(Q["oom_exits"], at=NOW)
    assert slept == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("reply, match", [
    (Reply(200, '{"status": "success", "data": {"resultType": "vec'), "invalid JSON"),
    (Reply(200, "<html><body>Grafana</body></html>"), "invalid JSON"),
    (Reply(200, {"data": {"resultType": "vector", "result": []}}), "not the Prometheus envelope"),
    (Reply(200, {"status": "success", "data": {"resultType": "vector", "result": [{}]}}),
     "not a Prometheus result"),
])
def test_malformed_answers_are_protocol_errors(reply, match):
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        stand.fail_next(reply)
        with pytest.raises(SourceProtocolError, match=match) as info:
            client(stand).query(Q["oom_exits"], at=NOW)
    assert "FLY_PROMETHEUS_URL" in info.value.hint


def test_slow_server_times_out_with_a_typed_error():
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        stand.fail_next(Reply(200, {"status": "success",
                                    "data": {"resultType": "vector", "result": []}}, delay=2.0))
        with pytest.raises(SourceUnavailable) as info:
            client(stand, timeout=0.3).query(Q["oom_exits"], at=NOW)
    assert info.value.kind == "timeout"


def test_auth_and_org_failures_say_what_to_check():
    with PrometheusStandIn(TOKEN, FIXTURE, forbidden=["fo1_OtherOrgToken_abcdefghijklmnopqrstuvwxyz0123"]) as stand:
        with pytest.raises(SourceAuthError) as info:
            client(stand, token="fo1_WrongToken_abcdefghijklmnopqrstuvwxyz012345").query(
                Q["oom_exits"], at=NOW)
        assert info.value.status == 401 and "You must be authenticated" in info.value.message
        assert "FLY_API_TOKEN" in info.value.hint and "FLY_ORG" in info.value.hint
        with pytest.raises(SourceAuthError) as info:
            client(stand, token="fo1_OtherOrgToken_abcdefghijklmnopqrstuvwxyz0123").query(
                Q["oom_exits"], at=NOW)
        assert info.value.status == 403
        with Session("live") as s, pytest.raises(SourceNotFound) as info:
            prom.Prometheus(s, f"{stand.url}/prometheus/acme", token=TOKEN).query(
                Q["oom_exits"], at=NOW)
        assert "FLY_ORG" in info.value.hint and "organization acme not found" in info.value.message


def test_range_reads_are_gathered_concurrently_and_keep_each_outcome():
    with PrometheusStandIn(TOKEN, FIXTURE) as stand:
        target = _target(FLY_API_TOKEN=TOKEN, FLY_API_BASE_URL=stand.url)
        with Session("live") as s:
            got = gather(s, target, prom.range_reads(
                {"memory_pct": Q["memory_pct"], "cpu_pct": Q["cpu_pct"], "broken": "sum(x"},
                now=NOW, window="1h", step="1m"))
    assert list(got) == ["memory_pct", "cpu_pct", "broken"]  # declaration order
    out = prom.results(got, got)
    assert not out["memory_pct"].empty and out["cpu_pct"].empty
    assert isinstance(out["broken"], PrometheusQueryError) and got["broken"].failed
    skipped = gather(Session("live"), _target(), prom.range_reads(
        {"memory_pct": Q["memory_pct"]}, now=NOW, window="1h", step="1m"))
    assert skipped["memory_pct"].skipped and prom.results(skipped, ["memory_pct"]) == {}
    assert "FLY_API_TOKEN" in skipped["memory_pct"].detail


# ----------------------------------------------------------------------------- configuration
def _target(**env: str) -> Target:
    return Target("live", APP, "https://x.fly.dev", environ=env)


def test_endpoint_defaults_to_flys_managed_prometheus_for_the_org():
    assert prom.endpoint(_target()) == "https://api.fly.io/prometheus/personal"
    assert prom.endpoint(_target(FLY_ORG="acme")) == "https://api.fly.io/prometheus/acme"
    assert prom.endpoint(_target(FLY_PROMETHEUS_URL="http://prom:9090/")) == "http://prom:9090"


def test_connect_needs_a_token_or_a_url():
    with pytest.raises(NotConfigured) as info:
        prom.connect(Session("live"), _target())
    assert "FLY_API_TOKEN" in info.value.needs and "FLY_PROMETHEUS_URL" in info.value.needs


def test_a_plain_prometheus_without_a_token_gets_no_authorization_header():
    seen = []

    def handler(req):
        seen.append(req)
        return Reply(200, {"status": "success", "data": {"resultType": "vector", "result": []}})

    with LocalHTTPServer(handler) as server:
        with Session("live") as s:
            assert prom.connect(s, _target(FLY_PROMETHEUS_URL=server.url)).query("up", at=NOW).empty
    assert "authorization" not in seen[0].headers
    assert seen[0].path.startswith("/api/v1/query?")


def test_record_then_replay_gives_the_same_frames_and_no_token_on_disk(tmp_path):
    target = None
    with PrometheusStandIn(TOKEN, FIXTURE, org="acme") as stand:
        target = _target(FLY_API_TOKEN=TOKEN, FLY_ORG="acme", FLY_API_BASE_URL=stand.url)
        with Session("record", raw_dir=tmp_path / "raw", now=NOW) as s:
            live = gather(s, target, prom.range_reads({"memory_pct": Q["memory_pct"]},
                                                      now=s.now(), window="1h", step="1m"))
    for path in (tmp_path / "raw").rglob("*.json"):
        assert TOKEN not in path.read_text()
    rec = json.loads(next((tmp_path / "raw" / "http").glob("*.json")).read_text())
    assert rec["request"]["headers"]["authorization"] == "[REDACTED]"
    # Replay with another environment: the recorded endpoint is used, not FLY_ORG.
    with Session("replay", capture_dir=tmp_path / "raw") as s:
        again = gather(s, _target(FLY_ORG="elsewhere"), prom.range_reads(
            {"memory_pct": Q["memory_pct"]}, now=s.now(), window="1h", step="1m"))
    pd.testing.assert_frame_equal(live.value("memory_pct").frame, again.value("memory_pct").frame)
