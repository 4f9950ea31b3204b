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

from opslib.logs import analyze, synth
from opslib.logs.engine import mask_template

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


printable_msg = st.text(alphabet=st.sampled_from(list("abcXYZ019 -_./:[]()\"'=,")), max_size=40)


@SETTINGS
@given(msgs=st.lists(printable_msg, min_size=1, max_size=40))
def test_template_text_is_the_one_counted(msgs: list[str]) -> None:
    msgs = [m for m in msgs if "\n" not in m and "\r" not in m]
    data = "".join(m + "\n" for m in msgs).encode()
    r = analyze(io.BytesIO(data), fmt="bare", top_templates=10_000)
    want = Counter(mask_template(m) for m in msgs)
    got = dict(zip(r.templates["template"], r.templates["count"], strict=True))
    assert got == dict(want)


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
