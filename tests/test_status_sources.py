"""Status pages and Fly secrets as sources, against local STAND-INS (real HTTP on 127.0.0.1)."""
from __future__ import annotations

import pytest

from opslib.demo.scenarios.data import incident, statuspage
from opslib.errors import SourceError, SourceProtocolError
from opslib.session import Session
from opslib.sources.fly_secrets import FlySecrets, value_digest
from opslib.sources.status import component_indicator, fly_incidents, supabase_status
from tests.servers import LocalHTTPServer, Reply, free_port
from tests.standins.fly_secrets import FlySecretsStandIn
from tests.standins.supabase import StatuspageStandIn

TOKEN = "fm2_StatusTestMacaroon_abcdefghijklmnopqrstuvwxyz0123"


def test_statuspage_summary_components_and_incidents():
    summary = statuspage("major", "Partial System Outage",
                         degraded={"Database": "major_outage", "Storage": "degraded_performance"},
                         incidents=[incident("DB connectivity", "major", ["Database"], "Fixing."),
                                    {**incident("Old one", "minor", ["Auth"], "Done."),
                                     "status": "resolved"}])
    with StatuspageStandIn(summary=summary) as site:
        page = supabase_status(Session("live"), site.url)
    assert (page.indicator, page.description) == ("major", "Partial System Outage")
    assert "AWS us-east-1" not in page.components["name"].tolist()  # group headers are not components
    assert page.components["group"].unique().tolist() == ["AWS us-east-1"]
    assert dict(zip(page.degraded["name"], page.degraded["status"])) == {
        "Database": "major_outage", "Storage": "degraded_performance"}
    assert page.incidents["name"].tolist() == ["DB connectivity"]  # resolved ones dropped
    assert page.incidents.iloc[0]["components"] == "Database"
    assert component_indicator(page, ("database", "pooler")) == "critical"
    assert component_indicator(page, ("auth",)) == "none"
    assert not page.ok


def test_fly_incidents_feed():
    incidents = [{"id": "1", "name": "Elevated API errors", "status": "investigating",
                  "created_at": "2026-11-20T02:00:00Z", "started_at": "2026-11-20T01:55:00Z",
                  "resolved_at": None, "updated_at": "2026-11-20T02:10:00Z",
                  "components": [{"id": "c1", "name": "Machines API"}]},
                 {"id": "2", "name": "Past", "status": "resolved", "created_at": "2026-11-01T00:00:00Z",
                  "started_at": "2026-11-01T00:00:00Z", "resolved_at": "2026-11-01T01:00:00Z",
                  "updated_at": "2026-11-01T01:00:00Z", "components": []}]
    with StatuspageStandIn(incidents=incidents) as site:
        page = fly_incidents(Session("live"), site.url + "/v1/incidents")
    assert page.indicator == "minor"
    assert page.incidents["name"].tolist() == ["Elevated API errors"]
    assert page.incidents.iloc[0]["components"] == "Machines API"
    with StatuspageStandIn(incidents=[]) as site:
        calm = fly_incidents(Session("live"), site.url + "/v1/incidents")
    assert (calm.indicator, calm.ok) == ("none", True)


@pytest.mark.parametrize("reply, error", [
    (Reply(200, "<html>not a status page</html>"), SourceProtocolError),
    (Reply(200, {"page": {}}), SourceProtocolError),
    (Reply(404, "Not Found"), SourceError),
])
def test_status_page_that_is_not_one(reply, error):
    with LocalHTTPServer(lambda r: reply) as site:
        with pytest.raises(error):
            supabase_status(Session("live"), site.url)


def test_status_page_unreachable_is_classified():
    with pytest.raises(SourceError) as exc:
        supabase_status(Session("live"), f"http://127.0.0.1:{free_port()}")
    assert exc.value.kind == "refused"


def test_fly_secrets_are_names_and_digests_only():
    with FlySecretsStandIn(TOKEN, {"app": []}, {"app": {"B": "bee-value", "A": "ay-value"}},
                           extra_fields={"value": "leaked-value"}) as fly:
        df = FlySecrets(Session("live"), "app", token=TOKEN, base_url=fly.url).list()
    assert df["name"].tolist() == ["A", "B"]
    assert "value" not in df.columns
    assert "leaked-value" not in df.to_csv()
    assert [r.path for r in fly.requests] == ["/v1/apps/app/secrets"]  # never show_secrets
    assert fly.requests[0].headers["authorization"] == f"FlyV1 {TOKEN}"
    assert fly.mutations == []


def test_value_digest_changes_with_the_value_and_place():
    assert value_digest("app", "K", "v1") != value_digest("app", "K", "v2")
    assert value_digest("app", "K", "v1") != value_digest("other", "K", "v1")
    assert value_digest("app", "K", "") is None
    assert "v1" not in (value_digest("app", "K", "v1") or "")
