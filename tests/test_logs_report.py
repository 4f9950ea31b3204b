"""The report's DataFrames, JSON summary, text summary, charts and the ``logs`` command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from opslib.logscan import analyze, charts
from opslib.logscan.cli import main
from opslib.logscan.chunks import mask_template
from tests.test_logs_samples import A, B, E, fly_text, incident, signal_entries

ENTRIES = incident() + signal_entries()


@pytest.fixture(scope="module")
def report():
    data = "".join(fly_text(e) + "\n" for e in ENTRIES).encode()
    return analyze(io.BytesIO(data))


def test_dataframes_have_documented_columns(report) -> None:  # noqa: ANN001
    pm = report.per_minute
    assert isinstance(pm.index, pd.DatetimeIndex) and str(pm.index.tz) == "UTC"
    assert list(pm.columns[:5]) == ["lines", "errors", "auth", "database", "http_5xx"]
    assert {s["id"] for s in report.signals} <= set(pm.columns)
    assert pm["lines"].sum() == report.lines_read  # every line has a timestamp here
    assert pm.index.to_series().diff().dropna().eq(pd.Timedelta(minutes=1)).all()  # no gaps
    assert pm["oom_kill"].sum() == 1
    for df, name in ((report.by_instance, "instance"), (report.by_region, "region")):
        assert df.index.name == name
        assert list(df.columns) == ["lines", "errors", "auth", "database", "http_5xx"]
        assert df["lines"].sum() == report.lines_read
    assert list(report.instance_minute.columns) == ["minute", "instance", "lines", "errors"]
    assert report.instance_minute["lines"].sum() == report.lines_read
    assert list(report.templates.columns) == ["template", "count", "share", "example"]
    assert report.templates["count"].is_monotonic_decreasing
    assert list(report.status_mix.columns) == ["count", "share"]
    assert list(report.spikes.columns) == ["minute", "series", "count", "baseline", "factor"]


def test_categories_are_the_seed_greps_on_the_whole_line(report) -> None:  # noqa: ANN001
    import re

    raw = ["" + fly_text(e) for e in ENTRIES]
    for name, pattern in (("errors", "error|exception|failed"), ("auth", "auth|unauthorized|401"),
                          ("database", "database|connection|query")):
        rx = re.compile(pattern.encode(), re.I)
        assert report.categories[name] == sum(1 for line in raw if rx.search(line.encode())), name


def test_to_dict_is_json_and_documented(report) -> None:  # noqa: ANN001
    d = report.to_dict()
    text = json.dumps(d)
    assert json.loads(text)["schema"] == 1
    for key in ("source", "format", "lines_read", "parsed", "unparsed", "window", "categories", "signals",
                "http", "status_mix", "templates", "by_instance", "by_region", "spikes", "per_minute",
                "unparsed_examples", "suppressed", "notes", "category_definitions", "other_templates"):
        assert key in d, key
    assert d["parsed"] + d["unparsed"] == d["lines_read"]
    sig = next(s for s in d["signals"] if s["id"] == "oom_kill")
    for key in ("id", "title", "runbook", "severity", "count", "first_seen", "last_seen", "instances", "regions",
                "examples"):
        assert key in sig
    assert d["per_minute"][0]["minute"].endswith("Z")
    assert "per_minute" not in report.to_dict(per_minute=False)


def test_summary_text_is_one_screen(report) -> None:  # noqa: ANN001
    text = report.summary_text()
    lines = text.splitlines()
    assert len(lines) <= 45 and max(len(x) for x in lines) <= 120
    assert "oom_kill" in text and "-> memory" in text
    assert "errors" in text and "Window:" in text


def test_template_masking_rules() -> None:
    assert mask_template("GET /api/users/123 200 12.5 ms") == "GET /api/users/<*> <*> <*> ms"
    assert mask_template("user 5e581e51-3e68-438c-adde-58e6d4f0accc from 172.16.3.2:51234") == "user <*> from <*>:<*>"
    assert mask_template("[PC01] refused on 0x7ffd PGRST303") == "[PC01] refused on <*> PGRST303"
    assert mask_template("no digits here") == "no digits here"
    # ids without a digit: eight or more hex letters; shorter hex-looking words stay
    assert mask_template("trace deadbeefcafe span DEADBEEF faded decade") == "trace <*> span <*> faded decade"
    assert mask_template("code ABCDEF12 and ABCDEF12345") == "code ABCDEF12 and <*>"  # a code stays, even hex
    # e-mails vary without digits; quoted words stay (a signal may read them)
    assert mask_template("user bob@example.com signed in") == "user <*> signed in"
    assert mask_template('{"code":"CERT_HAS_EXPIRED","n":3}') == '{"code":"CERT_HAS_EXPIRED","n":<*>}'
    assert mask_template("@timestamp [PC01] 'eu-west'") == "@timestamp [PC01] 'eu-west'"


def test_templates_group_lines_that_differ_only_in_ids() -> None:
    msgs = [f"job {i:08x}-{i} finished in {i * 3}ms" for i in range(1, 50)] + ["cache warm"] * 3
    data = "".join(fly_text(E(i, "app", A, "iad", "info", m)) + "\n" for i, m in enumerate(msgs)).encode()
    r = analyze(io.BytesIO(data))
    assert r.templates["template"].tolist() == ["job <*> finished in <*>", "cache warm"]
    assert r.templates["count"].tolist() == [49, 3]
    assert r.templates["example"].iloc[0] == fly_text(E(0, "app", A, "iad", "info", msgs[0]))


def test_spike_is_found_against_the_baseline() -> None:
    entries = [E(m * 60 + k, "app", A, "iad", "info", "GET /x 200 1.0 ms - 1") for m in range(30) for k in range(5)]
    entries += [E(20 * 60 + 30 + k * 0.1, "app", B, "iad", "info", "error: sorry, too many clients already")
                for k in range(40)]
    data = "".join(fly_text(e) + "\n" for e in sorted(entries, key=lambda e: e.t)).encode()
    r = analyze(io.BytesIO(data))
    sp = r.spikes
    assert set(sp["series"]) >= {"errors", "pg_too_many_connections"}
    assert (sp["minute"] == pd.Timestamp("2024-05-28T12:20:00Z")).all()


def test_charts_return_figures_without_pyplot(report) -> None:  # noqa: ANN001
    import sys

    figs = [charts.categories_per_minute(report), charts.signals_timeline(report), charts.top_templates(report),
            charts.instance_heatmap(report), charts.instance_heatmap(report, measure="errors")]
    for f in figs:
        assert isinstance(f, Figure) and f.axes
        buf = io.BytesIO()
        f.savefig(buf, format="png", dpi=40)
        assert buf.getvalue()[:4] == b"\x89PNG"
    assert "matplotlib.pyplot" not in sys.modules
    with pytest.raises(ValueError):
        charts.instance_heatmap(report, measure="bytes")


def test_charts_on_an_empty_report() -> None:
    r = analyze(io.BytesIO(b""))
    for fn in (charts.categories_per_minute, charts.signals_timeline, charts.top_templates, charts.instance_heatmap):
        assert isinstance(fn(r), Figure)


def test_cli_text_json_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "fly.log"
    path.write_text("".join(fly_text(e) + "\n" for e in ENTRIES))
    out, err = io.StringIO(), io.StringIO()
    assert main([str(path)], out, err) == 0
    assert "oom_kill" in out.getvalue() and err.getvalue() == ""
    out = io.StringIO()
    assert main([str(path), "--json", "--since", "2024-05-28T12:00:00Z", "--format", "fly-text"], out, err) == 0
    d = json.loads(out.getvalue())
    assert d["schema"] == 1 and d["lines_read"] == len(ENTRIES)
    assert any(f["runbook"] == "memory" for f in d["findings"])
    for argv, text in (([str(tmp_path / "nope.log")], "not found"), ([str(path), "--format", "xml"], "invalid choice"),
                       ([str(path), "--since", "soon"], "cannot read the time"), ([], "required")):
        err = io.StringIO()
        assert main(argv, io.StringIO(), err) == 2, argv
        assert text in err.getvalue(), err.getvalue()
    assert main(["--help"], io.StringIO(), io.StringIO()) == 0


def test_templates_group_lines_that_differ_in_emails_or_ids() -> None:
    msgs = ([f"login failed for {u}@example.com" for u in ("alice", "bob", "carol")]
            + [f'role "{r}" does not exist' for r in ("web1", "worker2")])
    data = "".join(fly_text(E(i, "app", A, "iad", "info", m)) + "\n" for i, m in enumerate(msgs)).encode()
    r = analyze(io.BytesIO(data))
    got = dict(zip(r.templates["template"], r.templates["count"], strict=True))
    assert got == {"login failed for <*>": 3, 'role "<*>" does not exist': 2}


def test_the_logs_command_ends_with_its_output_whole_and_its_status(tmp_path: Path) -> None:
    """`python -m opslib logs` ends without the interpreter's teardown: its JSON must still be
    whole when stdout is a pipe, its status the command's, its errors on stderr."""
    import subprocess
    import sys

    path = tmp_path / "fly.log"
    path.write_text("".join(fly_text(e) + "\n" for e in ENTRIES) * 200)
    for module in ("opslib", "opslib.logscan"):
        argv = [sys.executable, "-m", module] + (["logs"] if module == "opslib" else [])
        proc = subprocess.run(argv + [str(path), "--json"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["lines_read"] == 200 * len(ENTRIES)
        proc = subprocess.run(argv + [str(tmp_path / "nope.log")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "not found" in proc.stderr and proc.stdout == ""
