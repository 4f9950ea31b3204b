"""The TLS probe against real TLS servers on 127.0.0.1 with trustme certificates."""
from __future__ import annotations

from datetime import timedelta

import pytest
import trustme

from opslib.session import Session
from opslib.times import utcnow
from opslib.sources.tls import hostname_matches, probe_tls, tls_frame
from tests.servers import free_port
from tests.tls_servers import LocalTLSServer, ca_file, leaf, self_signed

HOST = "app.example.test"


@pytest.fixture(scope="module")
def cas(tmp_path_factory):
    trusted, other = trustme.CA(), trustme.CA()
    return trusted, other, ca_file(trusted, tmp_path_factory.mktemp("ca"))


def _probe(chain: tuple[bytes, bytes], cafile: str, session: Session | None = None):
    with LocalTLSServer(*chain) as server:
        return probe_tls(session or Session("live"), HOST, server.port, connect_host="127.0.0.1",
                         cafile=cafile, timeout=3)


def test_valid_chain(cas):
    ca, _, cafile = cas
    r = _probe(leaf(ca, HOST, days_left=60), cafile)
    assert r.error is None and r.chain_verified is True and r.verify_error == ""
    assert r.hostname_match is True and HOST in r.sans
    assert 59.9 < r.days_left <= 60 and r.http_status == 200
    assert r.tls_version.startswith("TLS") and not r.self_signed
    assert r.not_after - r.not_before == timedelta(days=90)


def test_expired_certificate(cas):
    ca, _, cafile = cas
    r = _probe(leaf(ca, HOST, days_left=-3), cafile)
    assert r.chain_verified is False and r.verify_error == "certificate has expired"
    assert r.days_left < -2.9 and r.hostname_match is True
    assert r.not_after is not None and r.http_status == 200  # read anyway, to show what is served


def test_wrong_hostname(cas):
    ca, _, cafile = cas
    r = _probe(leaf(ca, "other.example.test"), cafile)
    assert r.chain_verified is True and r.hostname_match is False
    assert r.sans == ["other.example.test"]


def test_untrusted_ca(cas):
    _, other, cafile = cas
    r = _probe(leaf(other, HOST), cafile)
    assert r.chain_verified is False
    assert r.verify_error == "unable to get local issuer certificate" and r.verify_code == 20
    assert r.hostname_match is True


def test_self_signed(cas):
    _, _, cafile = cas
    r = _probe(self_signed(HOST), cafile)
    assert r.chain_verified is False and r.self_signed
    assert r.verify_error == "self-signed certificate" and r.verify_code == 18


def test_nothing_listening_is_data_not_an_exception():
    r = probe_tls(Session("live"), HOST, free_port(), connect_host="127.0.0.1", timeout=2)
    assert r.error == "refused" and r.not_after is None and r.chain_verified is None
    row = tls_frame([r]).iloc[0]
    assert row["error"] == "refused"


def test_replay_judges_days_left_at_the_captured_time(cas, tmp_path):
    ca, _, cafile = cas
    recorded_at = utcnow()
    live = Session("record", raw_dir=tmp_path / "raw", now=recorded_at)
    first = _probe(leaf(ca, HOST, days_left=5), cafile, session=live)
    replay = Session("replay", capture_dir=tmp_path / "raw")  # no server any more
    again = probe_tls(replay, HOST, first.port)
    assert again == first
    assert 4.9 < again.days_left <= 5


@pytest.mark.parametrize("host, names, ok", [
    ("www.example.com", ["www.example.com"], True),
    ("WWW.Example.com.", ["www.example.com"], True),
    ("a.example.com", ["*.example.com"], True),
    ("a.b.example.com", ["*.example.com"], False),
    ("example.com", ["*.example.com"], False),
    ("x.com", ["*.com"], False),
    ("127.0.0.1", ["127.0.0.1"], True),
    ("127.0.0.1", ["localhost"], False),
])
def test_hostname_matching(host, names, ok):
    assert hostname_matches(host, names) is ok
