"""Small inputs of log entries (the runbooks' logs-API lines) are analysed by the plain-Python
`reference.ReferenceWorker`; larger ones by the compiled kernels. Both must give the same
report, field by field, on every kind of entry: this holds each path to the other."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opslib.logscan import analysis, analyze, synth
from opslib.logscan.reference import http_status, timestamp_ms
from tests.logcorpus.validate import load

ROOT = Path(__file__).resolve().parents[1]


def entry(t: float, prov: str, inst: str, region: str, level: str, msg: str) -> dict:
    return {"timestamp": synth._ts_nano(t), "message": msg, "level": level, "instance": inst,  # noqa: SLF001
            "region": region, "provider": prov}


def both(items: list, **kw) -> tuple:
    """The report of the reference path and of the compiled path on the same entries."""
    assert len(items) <= analysis.SMALL_ENTRIES
    ref = analyze(items, **kw)
    old = analysis.SMALL_ENTRIES
    analysis.SMALL_ENTRIES = -1  # every input is "large": the kernels analyse it
    try:
        fast = analyze(items, **kw)
    finally:
        analysis.SMALL_ENTRIES = old
    return ref, fast


def assert_same(ref, fast) -> None:  # noqa: ANN001
    a, b = ref.to_dict(per_minute=False), fast.to_dict(per_minute=False)  # per_minute: compared as frames
    for key in a:
        assert a[key] == b[key], f"{key} differs:\nreference {json.dumps(a[key])[:1500]}\nkernels   {json.dumps(b[key])[:1500]}"
    pd.testing.assert_frame_equal(ref.instance_minute, fast.instance_minute)
    pd.testing.assert_frame_equal(ref.per_minute, fast.per_minute)


SYNTH = [entry(*e) for e in synth.entries(3000, seed=3)]


def test_an_incident_reads_the_same_on_both_paths() -> None:
    ref, fast = both(SYNTH, top_templates=1000, examples=5)
    assert {"oom_kill", "pg_too_many_connections", "http_5xx"} <= {s["id"] for s in ref.signals}
    assert_same(ref, fast)


def test_a_time_window_reads_the_same_and_shows_templates_from_inside_it() -> None:
    t0 = SYNTH[0]["timestamp"]
    since = datetime.fromisoformat(SYNTH[len(SYNTH) // 3]["timestamp"][:19] + "+00:00")
    until = datetime.fromisoformat(SYNTH[2 * len(SYNTH) // 3]["timestamp"][:19] + "+00:00")
    ref, fast = both(SYNTH, since=since, until=until, top_templates=1000)
    assert 0 < ref.filtered_out < len(SYNTH) and t0 < ref.window[0].isoformat()
    assert_same(ref, fast)
    # every example line shown for a template lies inside the window
    for example in ref.templates["example"]:
        ts = json.loads(example)["timestamp"] if example.endswith("}") else None
        assert ts is None or since.isoformat()[:19] <= ts[:19] < until.isoformat()[:19]


ODD = [
    # timestamps in every shape the kernels read, and some they do not
    {"timestamp": 1716897600, "message": "epoch seconds", "instance": "a1", "region": "iad"},
    {"timestamp": 1716897600123, "message": "epoch ms"},
    {"timestamp": 1716897600123456, "message": "epoch us"},
    {"timestamp": 1716897600123456789, "message": "epoch ns"},
    {"timestamp": 1716897600.75, "message": "epoch float"},
    {"timestamp": "2024-05-28T12:00:00,5+02:00", "message": "comma fraction and offset"},
    {"timestamp": "2024-05-28 12:01:00", "message": "no zone"},
    {"timestamp": "2024-05-28T12:02:00-0530", "message": "offset without colon"},
    {"timestamp": "2024-05-28T12:03:00+05", "message": "short offset"},
    {"timestamp": "2024-02-31T12:00:00Z", "message": "day 31 of February"},
    {"timestamp": "2024-05-28T12:00:60Z", "message": "leap second"},
    {"timestamp": "2024-05-28T12:00:00.Z", "message": "empty fraction"},
    {"timestamp": "yesterday", "message": "unreadable time"},
    {"timestamp": True, "message": "boolean time"},
    {"timestamp": None, "message": "no time"},
    {"timestamp": datetime(2024, 5, 28, 12, 4, tzinfo=UTC), "message": "a datetime object"},
    {"@timestamp": "2024-05-28T12:05:00Z", "msg": "msg and @timestamp keys"},
    # names and messages that need escaping, or are not strings
    {"timestamp": "2024-05-28T12:00:01Z", "message": 'quote " backslash \\ tab \t nl \n end',
     "instance": 'in"st', "region": "r\\g"},
    {"timestamp": "2024-05-28T12:00:02Z", "message": {"level": "error", "err": "connection refused"},
     "instance": 42, "region": ["iad"]},
    {"timestamp": "2024-05-28T12:00:03Z", "message": "ünïcödé error 🚀 \x1b[31mred\x1b[0m \x00"},
    # the nesting of flyctl, the logs API and the shipper
    {"attributes": {"timestamp": "2024-05-28T12:00:04Z", "message": "GET /a 502 3ms", "level": "error",
                    "instance": "148ed193b95089", "region": "ams", "meta": {"event": {"provider": "app"}}}},
    {"timestamp": "2024-05-28T12:00:05Z", "message": "database connection failed",
     "fly": {"app": {"instance": "5683606c"}, "region": "ord"}, "log": {"level": "error"},
     "event": {"provider": "app"}},
    # statuses: two triggers in one line, keys, commas, out-of-range codes
    {"timestamp": "2024-05-28T12:00:06Z", "message": 'status=503 then GET /x 200'},
    {"timestamp": "2024-05-28T12:00:07Z", "message": 'POST /y HTTP/1.1 201, then status=500'},
    {"timestamp": "2024-05-28T12:00:08Z", "message": '{"statusCode":504,"path":"/z"}'},
    {"timestamp": "2024-05-28T12:00:09Z", "message": '"status_code": 429 "status": 700'},
    {"timestamp": "2024-05-28T12:00:10Z", "message": "GET http://h/p 5000 then 404"},
    {"timestamp": "2024-05-28T12:00:11Z", "message": "OPTIONS * HTTP/1.1 204"},
    # items that are no entries: unparsed lines
    "a plain string item with error in it",
    42,
    {"no": "message here", "query": "failed"},
    ({"timestamp": "2024-05-28T12:00:12Z", "message": "pre-parsed", "level": "", "instance": "x",
      "region": "y", "provider": ""}, ""),
    (None, "a raw line that was no JSON"),
]


def test_odd_entries_read_the_same_on_both_paths() -> None:
    ref, fast = both(ODD, examples=10, top_templates=1000)
    assert ref.unparsed == 4 and ref.parsed == len(ODD) - 4
    assert_same(ref, fast)


@pytest.mark.parametrize("value, expected", [
    ('"2024-05-28T12:00:00Z"', 1716897600000),
    ('"2024-05-28T12:00:00.123456789Z"', 1716897600123),
    ('"2024-05-28T14:00:00+02:00"', 1716897600000),
    ('"2024-05-28T12:00:00"', 1716897600000),
    ("1716897600", 1716897600000),
    ("1716897600123456789", 1716897600123),
    ('"2024-13-01T00:00:00Z"', None),
    ('"1969-12-31T23:59:59Z"', None),
    ('"12:00:00"', None),
    ("12345678", None),
    ("null", None),
])
def test_timestamps_as_the_reference_states_them(value: str, expected: int | None) -> None:
    assert timestamp_ms(value.encode()) == expected


@pytest.mark.parametrize("line, expected", [
    (b'GET /api/users/1 HTTP/1.1" 200 512', 200),
    (b"status=503 then GET /x 200", 503),
    (b"GET /x 200 then status=503", 200),  # the first trigger in the line wins
    (b'{"statusCode":504}', 504),
    (b'"status_code": 429', 429),
    (b"status=5000", 0),
    (b"GET /x 5000 404", 404),
    (b"GET x 200", 0),  # no path after the method
    (b"nothing here", 0),
    (b'{"message":"{\\"status\\":503}"}', 503),  # a JSON message inside a JSON record
    (b'{"message":"INFO: 10.0.0.1:5 - \\"GET /a HTTP/1.1\\" 502","level":"info"}', 502),  # uvicorn in JSON
    (b"GET /a 2000 200x 404", 404),
    (b"res: { statusCode: 502 }", 502),
    (b"Completed 500 Internal Server Error in 12ms (ActiveRecord: 1.0ms)", 500),  # Rails
    (b"Completed 500  in 3ms", 500),
    (b"[info] Sent 503 in 12ms", 503),  # Phoenix
    (b"Completed 250 jobs in 3s", 0),
    (b"Sent 100 emails in 2 batches", 0),
    (b'[GIN] 2024/05/28 - 12:00:00 | 504 |     1.2ms |   10.0.0.1 | GET      "/api"', 504),
    (b"[GIN] debug mode | not a status |", 0),
])
def test_http_status_as_the_reference_states_it(line: bytes, expected: int) -> None:
    assert http_status(line) == expected


def test_the_real_corpus_reads_the_same_on_both_paths() -> None:
    items = []
    for i, e in enumerate(load()):
        for j, line in enumerate(e["lines"]):
            items.append({"timestamp": f"2024-05-28T12:{i % 60:02d}:{j % 60:02d}Z", "message": line,
                          "instance": e["id"][:14], "region": "iad", "level": "info"})
    ref, fast = both(items, examples=5, top_templates=5000)
    assert len(ref.signals) > 20
    assert_same(ref, fast)


PIECES = st.sampled_from([
    "error", "Exception", "FAILED", "auth", "401", "Query", "connection", "GET /x 502 ", "status=500",
    '"', "\\", "\n", " ", "é", "\x1b[31m", "deadbeefcafe", "user@example.com", "id 1234",
    "Out of memory: Killed process 42 (node)", "Health check on port 8080 has failed", "is now passing",
    "[PC01] instance refused connection", "Main child exited normally with code: 1", "too many clients",
    "JWT expired", "x509: certificate signed by unknown authority", "prepared statement \"s0\" does not exist",
    "Completed 502 Bad Gateway in 5ms", "Sent 500 in 3ms", "[GIN] x | 503 | y", '{"status":500}', "statusCode: 504",
])
TIMES = st.one_of(st.none(), st.integers(0, 4_000_000_000_000), st.sampled_from([
    "2024-05-28T12:00:00Z", "2024-05-28T12:00:59.999+01:00", "2024-05-28 23:59:59", "bad", ""]))
ENTRIES = st.lists(st.fixed_dictionaries({
    "timestamp": TIMES,
    "message": st.lists(PIECES, max_size=6).map("".join),
    "instance": st.sampled_from(["", "148ed193b95089", "5683606c", 'q"x']),
    "region": st.sampled_from(["", "iad", "ams"]),
}), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=ENTRIES)
def test_random_entries_read_the_same_on_both_paths(items: list[dict]) -> None:
    assert_same(*both(items, top_templates=1000))


def test_small_inputs_do_not_load_the_compiled_engine_and_large_ones_do() -> None:
    """A runbook's few thousand entries are analysed without importing numba (no compiler
    start-up in every notebook run); past SMALL_ENTRIES the kernels take over."""
    code = (
        "import sys, json\n"
        "from opslib.logscan import analyze\n"
        "items = [{'timestamp': '2024-05-28T12:00:00Z', 'message': 'GET /x 502 1ms'}] * int(sys.argv[1])\n"
        "r = analyze(items)\n"
        "print(json.dumps([r.lines_read, r.http['by_class']['5xx'], 'numba' in sys.modules]))\n"
    )
    out = {}
    for n in (3, 6_001):
        run = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True, cwd=ROOT,
                             timeout=300, check=True)
        out[n] = json.loads(run.stdout)
    assert analysis.SMALL_ENTRIES == 6_000
    assert out[3] == [3, 3, False]
    assert out[6_001] == [6_001, 6_001, True]
