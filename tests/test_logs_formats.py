"""Every input layout is read, auto-detected, and gives the same analysis of the same entries."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from opslib.logscan import FORMATS, analyze
from opslib.logscan.analysis import summarize_counts
from tests.test_logs_samples import (
    A,
    B,
    OLD,
    E,
    api_item,
    api_pages,
    dashboard,
    fly_text,
    fly_text_ansi,
    fly_text_old,
    flyctl_json,
    incident,
    shipper,
    signal_entries,
)

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = incident() + signal_entries()


def lines(render, entries=ENTRIES) -> bytes:  # noqa: ANN001
    return "".join(render(e) + "\n" for e in entries).encode()


def rendered(fmt: str) -> bytes:
    if fmt == "fly-text":
        return lines(fly_text)
    if fmt == "ndjson":
        return lines(shipper)
    if fmt == "fly-json":
        return "".join(flyctl_json(e) for e in ENTRIES).encode()  # back to back, no separator
    if fmt == "api":
        return api_pages(ENTRIES).encode()
    raise AssertionError(fmt)


@pytest.fixture(scope="module")
def reference():
    return analyze(io.BytesIO(rendered("fly-text")))


@pytest.mark.parametrize("fmt", ["fly-text", "ndjson", "fly-json", "api"])
def test_same_signals_in_every_structured_format(fmt: str, reference) -> None:  # noqa: ANN001
    r = analyze(io.BytesIO(rendered(fmt)))
    assert r.format == fmt  # auto-detected
    assert r.lines_read == len(ENTRIES) and r.parsed == len(ENTRIES) and r.unparsed == 0
    assert summarize_counts(r) == summarize_counts(reference)
    assert r.window == reference.window
    for sid in ("oom_kill", "proxy_pc01", "crash_loop"):
        assert r.signal(sid)["instances"] == reference.signal(sid)["instances"]
        assert r.signal(sid)["regions"] == reference.signal(sid)["regions"]
    assert set(r.by_instance.index) == {A, B, "3d8d413b29d089"}
    assert r.by_instance["lines"].sum() == len(ENTRIES)


def test_explicit_format_matches_auto() -> None:
    for fmt in ("fly-text", "ndjson", "fly-json", "api"):
        auto = analyze(io.BytesIO(rendered(fmt)))
        explicit = analyze(io.BytesIO(rendered(fmt)), fmt=fmt)
        assert summarize_counts(auto) == summarize_counts(explicit)
        assert auto.categories == explicit.categories


def test_fly_text_variants_all_parse_to_the_same_fields() -> None:
    e = E(61, "proxy", A, "iad", "error", "[PC01] instance refused connection. is your app listening on 0.0.0.0:8080?")
    variants = {
        "no space": fly_text(e),
        "space": fly_text(e, space=True),
        "nanoseconds": fly_text(e, frac=True),
        "ansi": fly_text_ansi(e),
    }
    for name, line in variants.items():
        r = analyze(io.BytesIO((line + "\n").encode()))
        assert r.parsed == 1, name
        assert list(r.by_instance.index) == [A], name
        assert list(r.by_region.index) == ["iad"], name
        assert summarize_counts(r) == {"proxy_pc01": 1}, name
        assert r.window[0].isoformat() == "2024-05-28T12:01:01+00:00", name
        assert r.templates["template"].tolist() == [
            "[PC01] instance refused connection. is your app listening on <*>:<*>?"], name


def test_8_hex_ids_and_older_layout_without_source_column() -> None:
    data = (fly_text(E(1, "runner", OLD, "lhr", "info", "Pulling container image")) + "\n"
            + fly_text_old(E(2, "app", OLD, "lhr", "info", "Listening on 0.0.0.0:8080")) + "\n").encode()
    r = analyze(io.BytesIO(data))
    assert r.parsed == 2
    assert list(r.by_instance.index) == [OLD] and r.by_instance.loc[OLD, "lines"] == 2
    assert list(r.by_region.index) == ["lhr"]


def test_fields_before_message_and_error_message_quirk() -> None:
    with_fields = ('2024-05-28T12:00:05Z proxy[148ed193b95089] iad [error]request.method="GET" '
                   'request.url="/api/items?id=1" request.id="01HZ3V6C9Q8W2X-iad" response.status=502 '
                   "[PU02] could not complete HTTP request to instance: connection closed before message completed")
    quirk = ('error.message="timed out while connecting to your instance. this indicates a problem with your app '
             '(hint: look at your logs and metrics)" 2023-04-12T15:25:48Z proxy[e286011ce76578] ams [error]'
             'request.method="GET" request.id="01GXV12QHNDP6JQRN7A1RA7MEM-ams"')
    r = analyze(io.BytesIO((with_fields + "\n" + quirk + "\n").encode()))
    assert r.parsed == 2
    # response.status=502 in the fields is a served 502, so it also counts as an HTTP 5xx
    assert summarize_counts(r) == {"proxy_pu02": 1, "proxy_pc05": 1, "http_5xx": 1}
    assert r.status_mix.loc[502, "count"] == 1
    assert set(r.by_region.index) == {"iad", "ams"}
    templates = set(r.templates["template"])
    assert "[PU02] could not complete HTTP request to instance: connection closed before message completed" in templates
    assert any(t.startswith("timed out while connecting to your instance") for t in templates)


def test_dashboard_copies_are_dated_by_since_or_flagged() -> None:
    late = [E(3600 * 11 + 59 * 60 + 58, "app", A, "iad", "info", "tick"),
            E(3600 * 11 + 59 * 60 + 59, "app", A, "iad", "info", "Out of memory: Killed process 9 (ruby)")]
    assert dashboard(late[0]) == "23:59:58 tick"
    data = lines(dashboard, late) + b"00:00:00 after midnight\n"
    # the copy crosses midnight (23:59:59 -> 00:00:00): the last line is the next day
    r = analyze(io.BytesIO(data), since="2024-05-27T00:00:00Z")
    assert r.parsed == 3
    assert r.window[0].isoformat() == "2024-05-27T23:59:58+00:00"
    assert r.window[1].isoformat() == "2024-05-28T00:00:00+00:00"
    assert summarize_counts(r) == {"oom_kill": 1}
    assert r.notes and "dashboard" in r.notes[0]
    undated = analyze(io.BytesIO(data))
    assert "pass --since" in undated.notes[0]


def test_bare_lines_and_unparsed_lines_are_kept_and_counted() -> None:
    data = b"Listening on 0.0.0.0:8080\nerror: sorry, too many clients already\n\n\xff\xfe binary \x00 junk\n"
    r = analyze(io.BytesIO(data))
    assert r.format == "bare"
    assert r.lines_read == 4 and r.parsed == 4 and r.unparsed == 0
    assert summarize_counts(r) == {"pg_too_many_connections": 1}
    # the same lines inside a fly-text stream are unparsed, still counted, still classified
    mixed = (fly_text(E(1, "app", A, "iad", "info", "hello")) + "\n").encode() * 3 + data
    r = analyze(io.BytesIO(mixed))
    assert r.format == "fly-text"
    assert r.lines_read == 7 and r.parsed == 3 and r.unparsed == 4
    assert r.parsed + r.unparsed == r.lines_read
    assert summarize_counts(r) == {"pg_too_many_connections": 1}
    assert r.categories["errors"] == 1
    assert any("too many clients" in x for x in r.unparsed_examples)


def test_an_apps_own_timestamped_lines_are_bare_not_unparsed_fly_text() -> None:
    """Lines that start with an ISO timestamp but have no `fly logs` source column (an app's
    own log copied from elsewhere, a shipper's raw file) are the app's messages: read as bare
    lines, every one parsed and classified — not 'fly-text' with every line unparsed."""
    data = (b"2024-05-28T12:00:00Z INFO http: GET /api/projects/1 200 4.1ms\n" * 40
            + b"2024-05-28T12:00:01Z ERROR db: sorry, too many clients already\n")
    r = analyze(io.BytesIO(data))
    assert r.format == "bare"
    assert r.unparsed == 0 and r.parsed == 41
    assert summarize_counts(r) == {"pg_too_many_connections": 1}
    # their own timestamps date them (per-minute series, time window) and are not part of
    # the message: the template is the app's words
    assert [t.isoformat() for t in r.window] == ["2024-05-28T12:00:00+00:00", "2024-05-28T12:00:01+00:00"]
    assert int(r.per_minute["lines"].sum()) == 41
    assert r.templates["template"].iloc[0] == "INFO http: GET /api/projects/<*> <*> <*>"
    # the timestamp is still read for the seed's greps: "401" in its fraction counts as grep does
    r = analyze(io.BytesIO(b"2024-05-28T12:00:00.401Z INFO ok\n2024-05-28T12:00:00.402Z INFO ok\n" * 20))
    assert r.categories["auth"] == 20 and r.format == "bare"


def test_malformed_json_lines_are_unparsed_not_fatal() -> None:
    data = (shipper(E(1, "app", A, "iad", "info", "ok")) + "\n{not json\n" + '{"no_message": 1}\n'
            + shipper(E(2, "app", A, "iad", "info", "(EMAXCONN) max client connections reached, limit: 200")) + "\n")
    r = analyze(io.BytesIO(data.encode()))
    assert r.format == "ndjson"
    assert r.lines_read == 4 and r.parsed == 2 and r.unparsed == 2
    assert summarize_counts(r) == {"supavisor_pool_exhausted": 1}
    pretty = "".join(flyctl_json(e) for e in ENTRIES[:3]) + "\nthis is not json\n" + flyctl_json(ENTRIES[3])
    r = analyze(io.BytesIO(pretty.encode()), fmt="fly-json")
    assert r.parsed == 4 and r.unparsed == 1 and r.lines_read == 5


def test_entries_from_the_logs_api_and_flat_dicts() -> None:
    items = [api_item(e, i) for i, e in enumerate(ENTRIES)]
    r_items = analyze(items)
    r_attrs = analyze(it["attributes"] for it in items)
    flat = [{"timestamp": it["attributes"]["timestamp"], "message": it["attributes"]["message"],
             "level": it["attributes"]["level"], "instance": it["attributes"]["instance"],
             "region": it["attributes"]["region"]} for it in items]
    r_flat = analyze(flat)
    ref = analyze(io.BytesIO(rendered("fly-text")))
    for r in (r_items, r_attrs, r_flat):
        assert r.lines_read == len(ENTRIES) and r.unparsed == 0
        assert summarize_counts(r) == summarize_counts(ref)
    r = analyze([{"message": "Out of memory: Killed process 1 (x)"}, 42, {"nothing": True}])
    assert r.lines_read == 3 and r.parsed == 1 and r.unparsed == 2


def test_gzip_file_path_and_stdin(tmp_path: Path) -> None:
    raw = rendered("ndjson")
    plain = tmp_path / "logs.ndjson"
    plain.write_bytes(raw)
    gz = tmp_path / "logs.ndjson.gz"
    gz.write_bytes(gzip.compress(raw))
    odd = tmp_path / "no-suffix"  # gzip is recognised by its magic bytes, not the name
    odd.write_bytes(gzip.compress(raw))
    ref = analyze(plain)
    for src in (str(gz), odd, gz.open("rb")):
        r = analyze(src)
        assert summarize_counts(r) == summarize_counts(ref) and r.lines_read == ref.lines_read
    out = subprocess.run(
        [sys.executable, "-c", "import json,sys; from opslib.logscan import analyze; "
         "r = analyze('-'); print(json.dumps([r.lines_read, r.format, len(r.signals)]))"],
        input=gzip.compress(raw), capture_output=True, check=True, cwd=ROOT,
    )
    assert json.loads(out.stdout) == [ref.lines_read, "ndjson", len(ref.signals)]


def test_long_lines_and_lines_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    from opslib.logscan import engine

    monkeypatch.setattr(engine, "CHUNK_BYTES", 1000)
    long_msg = "x" * 5000 + " Out of memory: Killed process 7 (java)"
    entries = ENTRIES + [E(2000, "app", A, "iad", "info", long_msg)]
    data = lines(fly_text, entries)
    small = engine.run(io.BytesIO(data), None, "auto", None, None, 3, 0, workers=2, chunk_bytes=1000)
    assert sum(r.lines for r in small[0]) == len(entries)
    r = analyze(io.BytesIO(data))
    assert r.lines_read == len(entries)
    assert summarize_counts(r)["oom_kill"] == 2
    # no trailing newline, CRLF line ends
    crlf = data.replace(b"\n", b"\r\n").rstrip(b"\r\n")
    r2 = analyze(io.BytesIO(crlf))
    assert r2.lines_read == len(entries) and r2.parsed == len(entries)
    assert summarize_counts(r2) == summarize_counts(r)


def test_since_until_window_filter() -> None:
    data = rendered("fly-text")
    r = analyze(io.BytesIO(data), since="2024-05-28T12:00:30Z", until="2024-05-28T12:03:00Z")
    assert r.lines_read == len(ENTRIES) and r.parsed + r.unparsed == r.lines_read
    assert r.filtered_out > 0
    assert r.window[0] >= r.window[0].__class__("2024-05-28T12:00:30Z")
    counts = summarize_counts(r)
    assert "oom_kill" in counts and "crash_loop" not in counts  # exits at 12:04-12:06 are outside
    assert r.per_minute.index.min().isoformat() >= "2024-05-28T12:00:00+00:00"


@pytest.mark.parametrize("bad,exc,text", [
    ({"fmt": "csv"}, ValueError, "unknown log format"),
    ({"since": "yesterday-ish"}, ValueError, "cannot read the time"),
    ({"since": "2024-05-28T13:00:00Z", "until": "2024-05-28T12:00:00Z"}, ValueError, "must be before"),
])
def test_bad_arguments_say_what_to_do(bad: dict, exc: type, text: str) -> None:
    with pytest.raises(exc, match=text):
        analyze(io.BytesIO(b"x\n"), **bad)


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not found"):
        analyze(tmp_path / "missing.log")
    with pytest.raises(OSError, match="directory"):
        analyze(tmp_path)
    with pytest.raises(ValueError, match="binary"):
        analyze(io.StringIO("text mode"))
    with pytest.raises(ValueError, match="cannot read logs"):
        analyze(3.14)
    assert "auto" in FORMATS and "api" in FORMATS


def test_empty_input() -> None:
    r = analyze(io.BytesIO(b""))
    assert (r.lines_read, r.parsed, r.unparsed) == (0, 0, 0)
    assert r.signals == [] and r.window == (None, None)
    assert json.dumps(r.to_dict())


@pytest.mark.parametrize("fmt", ["fly-text", "ndjson"])
def test_report_does_not_depend_on_chunking_or_threads(fmt: str, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from opslib.logscan import engine, synth

    path = synth.write(tmp_path / f"gen.{fmt}", fmt, 1_500_000, seed=5)
    whole = analyze(path).to_dict()
    monkeypatch.setattr(engine, "CHUNK_BYTES", 40_000)  # dozens of blocks over two workers
    pieces = analyze(path).to_dict()
    single = analyze(path, workers=1).to_dict()
    assert pieces == whole
    assert single == whole


def test_a_line_without_end_does_not_grow_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from opslib.logscan import engine

    monkeypatch.setattr(engine, "CHUNK_BYTES", 10_000)
    data = b"error " * 20_000 + b"\n" + fly_text(E(1, "app", A, "iad", "info", "after")).encode() + b"\n"
    r = analyze(io.BytesIO(data))
    assert r.parsed + r.unparsed == r.lines_read >= 3  # the 120 kB line was cut into pieces
    assert any("cut into pieces" in n for n in r.notes)
    assert r.lines_read - 1 == r.categories["errors"]  # every piece still counted by the seed grep


@pytest.mark.parametrize("render", [fly_text, shipper, fly_text_old], ids=["fly-text", "ndjson", "older-layout"])
def test_many_machines_interleaved_are_each_counted_as_themselves(render) -> None:  # noqa: ANN001
    """The parsers remember recently read machine prefixes (a few slots, by hash): with more
    machines than slots, interleaved at random, in regions and levels that differ, each line
    must still be counted for its own machine, region and level."""
    import random

    rnd = random.Random(5)
    machines = [(f"{rnd.getrandbits(56):014x}", rnd.choice(["iad", "ams", "lhr", "syd", "gru", "nrt"]))
                for _ in range(60)]
    entries, want, want_regions, errors = [], {}, {}, 0
    for k in range(6000):
        mid, region = rnd.choice(machines)
        level = rnd.choice(["info", "warn", "error"])
        entries.append(E(k * 0.01, rnd.choice(["app", "runner"]), mid, region, level, f"request {k} done"))
        want[mid] = want.get(mid, 0) + 1
        want_regions[region] = want_regions.get(region, 0) + 1
    r = analyze(io.BytesIO(lines(render, entries)))
    assert r.parsed == 6000 and r.unparsed == 0
    assert {k: int(v) for k, v in r.by_instance["lines"].items()} == want
    assert {k: int(v) for k, v in r.by_region["lines"].items()} == want_regions


# one 5xx and one 2xx per style, as each server prints them
ACCESS_STYLES = {
    "combined": ['10.0.0.1 - - [28/May/2024:12:00:00 +0000] "GET /a HTTP/1.1" 502 0 "-" "curl/8.5"',
                 '10.0.0.1 - - [28/May/2024:12:00:01 +0000] "POST /b HTTP/1.1" 201 12 "-" "curl/8.5"'],
    "morgan-dev": ["GET /api/x 503 12.345 ms - 0", "GET /api/y 200 1.002 ms - 512"],
    "uvicorn": ['INFO:     10.0.0.1:51234 - "GET /a HTTP/1.1" 500 Internal Server Error',
                'INFO:     10.0.0.1:51234 - "GET /b HTTP/1.1" 200 OK'],
    "gunicorn": ['[2024-05-28 12:00:00 +0000] [7] [INFO] 10.0.0.1 - - "GET /a HTTP/1.1" 504 0 "-" "python"',
                 '[2024-05-28 12:00:00 +0000] [7] [INFO] 10.0.0.1 - - "GET /b HTTP/1.1" 204 0 "-" "python"'],
    "go-chi": ['"GET http://x/a HTTP/1.1" from 10.0.0.1:5000 - 502 0B in 1.2ms',
               '"GET http://x/b HTTP/1.1" from 10.0.0.1:5000 - 200 12B in 0.3ms'],
    "gin": ['[GIN] 2024/05/28 - 12:00:00 | 500 |     1.2ms |   10.0.0.1 | GET      "/a"',
            '[GIN] 2024/05/28 - 12:00:00 | 200 |     0.2ms |   10.0.0.1 | GET      "/b"'],
    "rails": ['Started GET "/a" for 10.0.0.1 at 2024-05-28 12:00:00 +0000',
              "Completed 500 Internal Server Error in 12ms (ActiveRecord: 1.0ms | Allocations: 123)",
              'Started GET "/b" for 10.0.0.1 at 2024-05-28 12:00:00 +0000',
              "Completed 200 OK in 3ms (Views: 1.0ms | ActiveRecord: 0.5ms)"],
    "phoenix": ["12:00:00.000 request_id=F1 [info] GET /a", "12:00:00.000 request_id=F1 [info] Sent 503 in 12ms",
                "12:00:00.000 request_id=F2 [info] GET /b", "12:00:00.000 request_id=F2 [info] Sent 200 in 2ms"],
    "logfmt": ["level=info method=GET path=/a status=502 duration=1ms", "level=info method=GET path=/b status=200"],
    "json": ['{"level":"info","req":{"method":"GET","url":"/a"},"res":{"statusCode":503}}',
             '{"level":"info","method":"GET","path":"/b","status":200}'],
}


@pytest.mark.parametrize("style", sorted(ACCESS_STYLES))
def test_each_access_log_style_gives_its_http_status(style: str) -> None:
    lines = ACCESS_STYLES[style]
    want = {int(code) for code in re.findall(r"\b50[0-4]\b", " ".join(lines))}  # the style's one 5xx
    for source in (fly_text_lines(lines), [{"timestamp": "2024-05-28T12:00:00Z", "message": m} for m in lines]):
        r = analyze(source)
        assert r.http["by_class"]["5xx"] == 1 and r.http["by_class"]["2xx"] == 1, (style, r.http)
        assert set(r.status_mix.index) & {500, 502, 503, 504} == want


def fly_text_lines(messages: list[str]) -> io.BytesIO:
    return io.BytesIO("".join(f"2024-05-28T12:00:00Z app[148ed193b95089] iad [info]{m}\n"
                              for m in messages).encode())


def test_trace_continuations_in_fly_text_are_unparsed_without_the_python_retry(monkeypatch) -> None:
    """Lines no parser can place (a stack trace's continuation lines printed without Fly's
    prefix) are counted and kept as evidence straight from the kernel; only lines Python's
    parsers could read (a digit, error.message=, a JSON object) are retried in Python."""
    from opslib.logscan import engine

    retried: list[bytes] = []
    original = engine.Worker._slow

    def spy(self, buf, slow, rows, res):  # noqa: ANN001
        retried.extend(bytes(buf[rows.ls[i]:rows.le[i]]) for i in slow.tolist())
        return original(self, buf, slow, rows, res)

    monkeypatch.setattr(engine.Worker, "_slow", spy)
    data = ("2024-05-28T12:00:00Z app[148ed193b95089] iad [error]Traceback (most recent call last):\n"
            '  File "/app/views.py", line 42, in create\n'
            "\tat com.example.Order.create(Order.java:57)\n"
            "    at OrderService.create (/app/dist/order.js:88:31)\n"
            "12:00:03 dashboard copy with error\n"
            '{"timestamp":"2024-05-28T12:00:04Z","message":"json line with error"}\n'
            "2024-05-28T12:00:05Z not quite the fly layout\n").encode()
    r = analyze(io.BytesIO(data), fmt="fly-text")
    assert r.lines_read == 7 and r.parsed == 3 and r.unparsed == 4
    assert r.unparsed_examples == ['  File "/app/views.py", line 42, in create',
                                   "\tat com.example.Order.create(Order.java:57)",
                                   "    at OrderService.create (/app/dist/order.js:88:31)",
                                   "2024-05-28T12:00:05Z not quite the fly layout"]
    assert retried == [b"12:00:03 dashboard copy with error",
                       b'{"timestamp":"2024-05-28T12:00:04Z","message":"json line with error"}',
                       b"2024-05-28T12:00:05Z not quite the fly layout"]
    assert r.categories["errors"] == 3  # every line still counts as grep counts it
    # NDJSON: an object after tabs or spaces is read, anything else is unparsed at once
    r = analyze(io.BytesIO(b'\t {"timestamp":"2024-05-28T12:00:00Z","message":"x"}\nplain text\n'), fmt="ndjson")
    assert (r.parsed, r.unparsed, r.unparsed_examples) == (1, 1, ["plain text"])
