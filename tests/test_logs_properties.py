"""Properties: arbitrary bytes never crash the parser, counts are conserved, categories are
exactly what ``LC_ALL=C grep -ci`` counts, and the template text shown is the one counted."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opslib.logscan import analyze, synth
from opslib.logscan.chunks import mask_template

GREPS = {"errors": rb"error|exception|failed", "auth": rb"auth|unauthorized|401",
         "database": rb"database|connection|query"}

# fragments that steer random input through every parser branch
FRAGMENTS = [
    b"2024-05-28T12:00:00Z ", b"2024-05-28T12:00:00.123456789Z ", b"12:00:03 ", b"app[", b"proxy[", b"health[",
    b"148ed193b95089", b"5683606c", b"] ", b"]", b"iad ", b"[info]", b"[error] ", b'error.message="x\\" y" ',
    b'request.method="GET" ', b"response.status=502 ", b"{", b"}", b'"message":"', b'"timestamp":"', b'"instance":"',
    b'"region":"', b'":', b'"', b"\\", b",", b"ERROR", b"Exception", b"FAILED", b"auth", b"401", b"Query",
    b"connection", b"DataBase", b"Out of memory: Killed process 1 (x)", b"Process appears to have been OOM killed!",
    b"[PC01] ", b"[PR04] last error: [PC01]", b"Health check on port 8080 has failed", b"is now passing",
    b"too many clients", b"(EMAXCONN)", b"JWT expired", b"x509: certificate signed by unknown authority",
    b"GET /api/x 502 ", b"\r", b"\t", b" ", b"\xff", b"\xc3\xa9", b"\x00", b"0", b"9", b"a", b"Z",
]
line_bytes = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(b"".join)
text_input = st.lists(line_bytes, max_size=30).map(lambda ls: b"\n".join(ls))
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_truncated_or_fake_gzip_is_read_as_far_as_possible() -> None:
    import gzip

    raw = b"GET /x 502 1.0 ms - 0\n" * 50_000
    gz = gzip.compress(raw)
    r = analyze(io.BytesIO(gz[: len(gz) // 2]))
    assert 0 < r.lines_read < 50_000 and any("truncated or corrupt" in n for n in r.notes)
    r = analyze(io.BytesIO(b"\x1f\x8bnot gzip at all\nerror\n"))  # magic bytes only: plain lines
    assert r.lines_read == 2 and r.categories["errors"] == 1 and not r.notes


def expected_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=3000), text_input),
       fmt=st.sampled_from(["auto", "fly-text", "ndjson", "bare", "fly-json", "api"]))
def test_arbitrary_bytes_never_crash_and_counts_are_conserved(data: bytes, fmt: str) -> None:
    r = analyze(io.BytesIO(data), fmt=fmt)
    assert r.parsed + r.unparsed == r.lines_read
    assert r.parsed >= 0 and r.unparsed >= 0
    line_based = fmt in ("fly-text", "ndjson", "bare") or (fmt == "auto" and r.format in ("fly-text", "ndjson", "bare"))
    if line_based and data[:2] != b"\x1f\x8b":  # gzip's magic: the lines are inside the compressed stream
        assert r.lines_read == expected_lines(data)
    assert sum(r.categories.values()) <= 3 * r.lines_read
    r.to_dict()
    r.summary_text()


@SETTINGS
@given(data=text_input, fmt=st.sampled_from(["fly-text", "ndjson", "bare"]))
def test_categories_equal_ascii_case_insensitive_grep(data: bytes, fmt: str) -> None:
    r = analyze(io.BytesIO(data), fmt=fmt)
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines = lines[:-1]
    for name, pattern in GREPS.items():
        rx = re.compile(pattern, re.I)  # bytes + re.I is ASCII-only, like LC_ALL=C grep -i
        assert r.categories[name] == sum(1 for ln in lines if rx.search(ln)), name


# Every field of the shipper's record and of a `fly logs` line, filled with pieces that hold
# (or almost hold) keywords: the fast parsers leave plain fields (timestamps, hex machine
# ids, three-letter regions, known providers) out of the keyword scan, and must still count
# exactly what grep counts on the whole line.
FIELD = st.lists(st.sampled_from(["a", "e", "f", "0", "1", "4", "401", "40", "auth", "Auth", "query", "error", "rror",
                                  "fail", "app", "runner", "proxy", "health", "iad", "r", "x", "-", "."]),
                 min_size=1, max_size=4).map("".join)
TIMESTAMP = st.sampled_from(["2024-05-28T12:00:00.401Z", "2024-05-28T12:00:00.123456789Z", "2401-05-28T12:00:00Z",
                             "2024-05-28T12:00:00Z", "2024-05-28T12:00:00Zauth", "not a time"])
INSTANCE = st.one_of(st.sampled_from(["148ed193b95089", "5683606c", "148ed401b95089", "148ED193B95089"]), FIELD)
REGION = st.one_of(st.sampled_from(["iad", "ord", "401", "auth", "db"]), FIELD)


@st.composite
def record(draw: st.DrawFn) -> tuple[bytes, bytes]:
    prov, inst, name, region, host, level = (draw(x) for x in (FIELD, INSTANCE, FIELD, REGION, FIELD, FIELD))
    msg, ts = draw(FIELD), draw(TIMESTAMP)
    ship = (f'{{"event":{{"provider":"{prov}"}},"fly":{{"app":{{"instance":"{inst}","name":"{name}"}},'
            f'"region":"{region}"}},"host":"{host}","log":{{"level":"{level}"}},"message":"{msg}",'
            f'"timestamp":"{ts}"}}')
    text = f"{ts} {prov}[{inst}] {region} [{level}] {msg}"
    return ship.encode(), text.encode()


@SETTINGS
@given(records=st.lists(record(), min_size=1, max_size=20))
def test_categories_equal_grep_when_keywords_sit_in_any_field(records: list[tuple[bytes, bytes]]) -> None:
    for fmt, lines in (("ndjson", [r[0] for r in records]), ("fly-text", [r[1] for r in records])):
        r = analyze(io.BytesIO(b"\n".join(lines) + b"\n"), fmt=fmt)
        for name, pattern in GREPS.items():
            rx = re.compile(pattern, re.I)
            assert r.categories[name] == sum(1 for ln in lines if rx.search(ln)), (fmt, name)


def test_keywords_in_plain_looking_fields_are_counted() -> None:
    fields = [  # (timestamp, provider, instance, region): each hides "auth" or "401", but the last
        ("2024-05-28T12:00:00Z", "app", "148ed193b95089", "auth"),
        ("2024-05-28T12:00:00Z", "rauthx", "148ed193b95089", "iad"),
        ("2024-05-28T12:00:00.401Z", "app", "148ed193b95089", "iad"),
        ("2024-05-28T12:00:00Z", "app", "148ed401b95089", "iad"),
        ("2024-05-28T12:00:00Z", "app", "148ed193b95089", "401"),
        ("2024-05-28T12:00:00Z", "app", "148ed193b95089", "iad"),
    ]
    text = "".join(f"{t} {p}[{i}] {r} [info] hello\n" for t, p, i, r in fields)
    ship = "".join(f'{{"event":{{"provider":"{p}"}},"fly":{{"app":{{"instance":"{i}","name":"web"}},"region":"{r}"}},'
                   f'"host":"h","log":{{"level":"info"}},"message":"hello","timestamp":"{t}"}}\n' for t, p, i, r in fields)
    for fmt, data in (("fly-text", text), ("ndjson", ship)):
        r = analyze(io.BytesIO(data.encode()), fmt=fmt)
        assert r.parsed == len(fields), fmt
        assert r.categories["auth"] == len(fields) - 1, fmt


printable_msg = st.text(alphabet=st.sampled_from(list("abcXYZ019 -_./:[]()\"'=,@")), max_size=40)


# long tokens (the kernel reads tokens eight bytes at a time), capitals, digits and
# non-ASCII letters (separators, as in the Python rule)
long_token_msg = st.lists(
    st.text(alphabet=st.sampled_from(list("aZ09_.-")), min_size=1, max_size=20)
    | st.sampled_from(["PC01", "PGRST303", "E1234567890", " ", " - ", "é", "ß/", ":", "deadbeef", "DEADBEEFcafe",
                       "abcdefa", "cafebabe-", "feedfacefeedfacefeed", "ABCDEF12"]),
    max_size=12,
).map("".join)


@SETTINGS
@given(msgs=st.lists(printable_msg | long_token_msg, min_size=1, max_size=40))
def test_template_text_is_the_one_counted(msgs: list[str]) -> None:
    msgs = [m for m in msgs if "\n" not in m and "\r" not in m]
    data = "".join(m + "\n" for m in msgs).encode()
    r = analyze(io.BytesIO(data), fmt="bare", top_templates=10_000)
    want = Counter(mask_template(m) for m in msgs)
    got = dict(zip(r.templates["template"], r.templates["count"], strict=True))
    assert got == dict(want)


def test_templates_tell_apart_tokens_that_differ_past_eight_bytes() -> None:
    # the kernel reads a token a word of eight bytes at a time: each word must count
    msgs = ["refused_by_peer x", "refused_by_host x", "abcdefgh x", "abcdefghi x", "abcdefgh", "abcdefgh.",
            "code ABCDEF12", "code ABCDEF13", "trace deadbeefcafe", "trace cafebabe0",
            "ABCDEFGHIJKLMNOP q", "ABCDEFGHIJKLMNOQ q", "ABCDEFGHIJKLMNOPQ q", "digits123456789abc y",
            "digits987 y", "caf\u00e9-bar z", "caf\u00e9-baz z"] * 2
    data = "".join(m + "\n" for m in msgs).encode()
    r = analyze(io.BytesIO(data), fmt="bare", top_templates=100)
    got = dict(zip(r.templates["template"], r.templates["count"], strict=True))
    assert got == dict(Counter(mask_template(m) for m in msgs))
    assert len(got) == 15  # only the two digit tokens share a template, and the two hex ids


@pytest.mark.skipif(shutil.which("grep") is None, reason="needs grep")
@pytest.mark.parametrize("fmt", ["fly-text", "ndjson"])
def test_categories_match_real_grep_on_generated_logs(tmp_path: Path, fmt: str) -> None:
    path = synth.write(tmp_path / f"gen.{fmt}", fmt, 3_000_000, seed=3)
    r = analyze(path)
    for name, pattern in GREPS.items():
        out = subprocess.run(["grep", "-ciE", pattern.decode(), str(path)], capture_output=True, text=True,
                             env={"LC_ALL": "C"})
        assert r.categories[name] == int(out.stdout), name
    assert r.lines_read == expected_lines(path.read_bytes())
    assert r.unparsed == 0
    ids = {s["id"] for s in r.signals}
    assert {"oom_kill", "proxy_pc01", "pg_too_many_connections", "supavisor_pool_exhausted", "jwt_clock_skew"} <= ids
    assert not ids & {"health_check_failing", "app_exit_nonzero"}  # boot blips and the auto-stop are not incidents


def test_a_damaged_gz_file_is_an_error_not_bytes(tmp_path) -> None:
    from tests.conftest import opslib_cli

    fake = tmp_path / "app.log.gz"
    fake.write_bytes(b"not gzip\nerror\n")
    broken = tmp_path / "broken.log.gz"
    broken.write_bytes(b"\x1f\x8b\x08" + b"\x00" * 20)
    for path, message in ((fake, "is not gzip"), (broken, "damaged gzip file")):
        proc = opslib_cli("logs", str(path))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = opslib_cli("logs", "--since", "99999999d", str(fake))
    assert proc.returncode == 2 and "reaches back before any log" in proc.stderr


# pieces of real wording from the signal table, noise, ids, quotes and e-mails
_PHRASES = sorted({w for e in __import__("opslib.logscan.signals", fromlist=["TABLE"]).TABLE
                   for w in e.any})
ORACLE_PIECE = st.one_of(
    st.sampled_from(_PHRASES),
    st.sampled_from(["Main child exited normally with code: 1", "exit status 0", "panic: boom",
                     "http: panic serving 10.0.0.1:5", "Out of memory: Killed process 42 (node)",
                     "Health check on port 8080 has failed", "[PC01] instance refused connection",
                     'prepared statement "s0" already exists', 'role "web" does not exist',
                     "connection refused 5432", "getaddrinfo ENOTFOUND db.x", "reached hard limit"]),
    st.sampled_from(["GET /x 200", "user bob@example.com", '"', "'", ":", " ", "error", "id 1234",
                     '{"code":"', '"}', "PGRST301", "db", "x", "trace deadbeefcafe", "faded", "decade"]),
)


@SETTINGS
@given(msgs=st.lists(st.lists(ORACLE_PIECE, min_size=1, max_size=6).map("".join),
                     min_size=1, max_size=30))
def test_the_engine_computes_what_the_plain_python_reference_does(msgs: list[str]) -> None:
    """The compiled engine (keyword filter, template cache, parallel chunks) against the
    line-by-line reference (every family tried on every line): categories, templates, and
    every signal that is counted per line."""
    from opslib.logscan import signals as S
    from opslib.logscan.reference import analyze_messages

    ref = analyze_messages(msgs)
    r = analyze(io.BytesIO("".join(m + "\n" for m in msgs).encode()), fmt="bare",
                top_templates=10_000)
    assert dict(r.categories) == {k: ref.categories.get(k, 0) for k in r.categories}
    assert dict(zip(r.templates["template"], r.templates["count"], strict=True)) == dict(ref.templates)
    per_line = {sid for sid in ref.hits if sid not in S.STATEFUL}
    got = {s["id"]: s["count"] for s in r.signals if s["id"] in S.SIGNALS and s["id"] not in
           ("oom_kill", "health_check_failing", "health_check_warning", "health_check_recovered",
            "crash_loop", "http_5xx")}
    assert got == {sid: ref.hits[sid] for sid in per_line}


# pieces of access lines in every style the status reader knows, and near misses
STATUS_PIECE = st.sampled_from([
    "GET ", "post ", "/api/x", "http://h/p", "* ", " HTTP/1.1\" ", "502", "200", "5000", "99", " ", ", ",
    "status", "status=", '"status":', '\\"status\\":', "statusCode: ", '"status_code": ', "Completed ",
    "Sent ", " in ", "in 12ms", "Internal Server Error", "OK", "jobs", "[GIN] ", " | ", "|", "x",
    '502"', '200\\"', '"',
])


@SETTINGS
@given(lines=st.lists(st.lists(STATUS_PIECE, min_size=1, max_size=10).map("".join), min_size=1, max_size=40))
def test_the_kernels_read_each_lines_http_status_as_the_reference_states_it(lines: list[str]) -> None:
    """Access-line status in the kernels (a keyword scan that meets triggers roughly, not
    exactly, in line order) equals `reference.http_status`'s plain statement of the rule."""
    from opslib.logscan.reference import http_status

    data = [line.replace("\n", " ").encode() for line in lines]
    r = analyze(io.BytesIO(b"".join(d + b"\n" for d in data)), fmt="bare")
    want = Counter(v for v in (http_status(d) for d in data) if v)
    assert {int(k): int(v) for k, v in r.status_mix["count"].items()} == dict(want)
