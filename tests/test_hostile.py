"""Hostile input against the evidence: local servers that answer with bodies built to leak
secrets past redaction. Every test runs the real command line and runner (notebook in
process) and then reads every byte the run wrote."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tests.conftest import clean_env, only_run, run_dirs
from tests.inprocess import opslib_run
from tests.servers import LocalHTTPServer, Reply

TOKEN = "fo1_CanaryTokenQ7x9Zr2Lm4Np6Ks8Jd0Hf3Gb5Vc1Wt"
PASSWORD = "Canary-Pw-9f3k2j5h8g"


def _everything(run: Path) -> bytes:
    """Every byte of the run, plus every base64 body in raw/ decoded."""
    out = b""
    for path in sorted(run.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        out += data
        if path.suffix == ".json" and "raw" in path.parts:
            body = (json.loads(data).get("response") or {}).get("body_b64")
            if body:
                out += base64.b64decode(body)
    return out


def _prefixes(secret: str, shortest: int = 6) -> list[bytes]:
    return [secret[:n].encode() for n in range(shortest, len(secret) + 1)]


def test_a_body_that_is_not_utf8_is_redacted_before_it_is_stored(reports):
    body = b"\xff\xfe\x00 not utf-8; token=" + TOKEN.encode() + b" pw=" + PASSWORD.encode()
    with LocalHTTPServer(lambda r: Reply(500, body)) as app:
        proc = opslib_run("run", "health", "--app-url", app.url, "-p", "probes=1",
                          env=clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                                        DATABASE_URL=f"postgresql://u:{PASSWORD}@127.0.0.1:1/d"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    everything = _everything(run)
    assert TOKEN.encode() not in everything and PASSWORD.encode() not in everything
    stored = [json.loads(p.read_text()) for p in (run / "raw" / "http").glob("*-app.json")]
    assert stored and stored[0]["response"]["body_redacted"] is True


def test_a_non_ascii_secret_is_redacted_in_every_form_even_read_with_the_wrong_charset(reports):
    """A database password with non-ASCII letters, echoed by a server that labels its UTF-8
    body ISO-8859-1: read as text it becomes mojibake (``pÃ¤ss…``), which is still the
    secret."""
    from urllib.parse import quote

    password = "Pässwörd-Ünïcødé-4711"
    body = f"db login failed for password={password}".encode()
    with LocalHTTPServer(lambda r: Reply(500, body, headers={
            "content-type": "text/plain; charset=iso-8859-1"})) as app:
        proc = opslib_run("run", "health", "--app-url", app.url, "-p", "probes=1",
                          env=clean_env(OPSLIB_REPORTS=str(reports),
                                        DATABASE_URL=f"postgresql://u:{quote(password)}@127.0.0.1:1/d"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    everything = _everything(only_run(reports)) + proc.stdout.encode()
    mojibake = password.encode().decode("latin-1")
    forms = {password, mojibake, json.dumps(password)[1:-1], json.dumps(mojibake)[1:-1],
             quote(password)}
    leaks = [f for f in forms if f.encode() in everything or f[:10].encode() in everything]
    assert not leaks, leaks


def test_an_error_excerpt_is_redacted_before_it_is_cut(reports):
    """The password straddles the 200-character cut of an error excerpt: cut first, its
    head would no longer be recognised and would reach findings, HTML and the terminal."""
    pad = "x" * (200 - len("upstream says: ") - 12)  # 12 characters before the cut
    body = f"upstream says: {pad}{PASSWORD} (login failed)"
    with LocalHTTPServer(lambda r: Reply(502, body)) as flaps:
        proc = opslib_run("run", "health", "--app", "live-app", "--app-url", flaps.url,
                          "-p", "probes=1",
                          env=clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                                        FLY_FLAPS_BASE_URL=flaps.url,
                                        DATABASE_URL=f"postgresql://u:{PASSWORD}@127.0.0.1:1/d"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    everything = _everything(only_run(reports)) + proc.stdout.encode()
    leaked = [p for p in _prefixes(PASSWORD) if p in everything]
    assert not leaked, f"{len(leaked[-1])} characters of the password reached the evidence"


# ----------------------------------------------------------------------------- tampered runs
def _demo_runs(reports: Path, n: int, *, apart: bool = False) -> list[Path]:
    """``n`` demo runs in one incident (chained), or each in its own (``apart``)."""
    from tests.conftest import run_dirs

    for i in range(n):
        assert opslib_run("run", "health", "--incident", f"inc-{i}" if apart else "inc-v",
                          env=clean_env(OPSLIB_REPORTS=str(reports))).returncode == 0
    return run_dirs(reports)


def _verify(*args: str) -> "object":
    return opslib_run("verify", *args)


def test_verify_fails_a_run_whose_manifest_was_deleted_and_never_loses_one(reports):
    a, b, c = _demo_runs(reports, 3)
    (a / "EVIDENCE_MANIFEST.json").unlink()                       # the run itself, given alone
    proc = _verify(str(a))
    assert proc.returncode == 1 and "manifest is missing" in proc.stdout
    for name in ("EVIDENCE_MANIFEST.json", "findings.json", "parameters.json"):
        (b / name).unlink()                                       # it must not vanish
    (c / "EVIDENCE_MANIFEST.json").write_text('{"schema": "2", "files": []}')
    proc = _verify(str(reports))
    assert proc.returncode == 1
    assert f"FAIL {a}" in proc.stdout and f"FAIL {b}" in proc.stdout and f"FAIL {c}" in proc.stdout
    assert "0/3 runs verified" in proc.stdout and "is not a number" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_verify_reports_each_damaged_manifest_as_that_runs_problem_and_goes_on(reports):
    a, b, c = _demo_runs(reports, 3, apart=True)
    (a / "EVIDENCE_MANIFEST.json").write_text("null")
    (b / "EVIDENCE_MANIFEST.json").unlink()
    (b / "EVIDENCE_MANIFEST.json").mkdir()
    proc = _verify(str(reports))
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert f"OK   {c}" in proc.stdout and "1/3 runs verified" in proc.stdout
    assert _verify(str(c / "findings.json")).returncode == 2     # a file is a usage error


def test_file_names_with_newlines_cannot_forge_ok_lines(reports):
    run, = _demo_runs(reports, 1)
    (run / "x\nOK   forged-run (99 files checked)").write_text("forged")
    proc = _verify(str(reports))
    assert proc.returncode == 1
    assert [line for line in proc.stdout.splitlines() if line.startswith("OK")] == []


def test_replay_of_tampered_or_manifest_less_evidence_is_refused_or_marked(reports):
    a, b = _demo_runs(reports, 2)
    findings_a = json.loads((a / "findings.json").read_text())
    findings_a["findings"][0]["title"] = "forged"
    (a / "findings.json").write_text(json.dumps(findings_a))
    (b / "EVIDENCE_MANIFEST.json").unlink()
    env = clean_env(OPSLIB_REPORTS=str(reports / "again"))
    for run in (a, b):
        proc = opslib_run("run", "health", "--target", f"replay:{run}", env=env)
        assert proc.returncode == 2 and "refusing to replay" in proc.stderr, proc.stderr
        assert not (reports / "again").exists(), "nothing written"
    proc = opslib_run("run", "health", "--target", f"replay:{b}", "--replay-unverified", env=env)
    assert proc.returncode == 0 and "WARNING: replayed from evidence that does not verify" in proc.stdout
    new = only_run(reports / "again")
    f = json.loads((new / "findings.json").read_text())
    assert f["replay"]["verified"] is False and "manifest is missing" in f["replay"]["problems"][0]
    facts = json.loads((new / "EVIDENCE_MANIFEST.json").read_text())
    assert facts["run"]["replayed_from"]["verified"] is False


# ----------------------------------------------------------------------------- signed, chained
def _signed_runs(reports: Path, n: int, environ: dict) -> list[Path]:
    from tests.conftest import run_dirs

    for _ in range(n):
        assert opslib_run("run", "health", "--incident", "inc-s",
                          env=clean_env(OPSLIB_REPORTS=str(reports), **environ)).returncode == 0
    return run_dirs(reports)


def test_signed_chained_runs_verify_and_a_forgery_with_a_recomputed_manifest_is_named(reports):
    from opslib.evidence import build_manifest
    from opslib.signing import generate

    private, public = generate()
    a, b, c = _signed_runs(reports, 3, {"OPSLIB_SIGNING_KEY": private})
    env = clean_env(OPSLIB_TRUSTED_KEYS=public)
    proc = opslib_run("verify", str(reports), env=env)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count(", trusted; chain intact)") == 3
    assert private.encode() not in b"".join(_everything(r) for r in (a, b, c))

    # the forger rewrites b's findings and recomputes its manifest (no key: unsigned)
    f = json.loads((b / "findings.json").read_text())
    f["severity"] = "ok"
    (b / "findings.json").write_text(json.dumps(f))
    old = json.loads((b / "EVIDENCE_MANIFEST.json").read_text())
    forged = build_manifest(b, old["run"])
    forged["chain"] = old["chain"]
    (b / "EVIDENCE_MANIFEST.json").write_text(json.dumps(forged, indent=2))
    proc = opslib_run("verify", str(reports), env=env)
    assert proc.returncode == 1
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if line[:4] in ("OK  ", "FAIL")}
    assert lines[str(b)].startswith("FAIL") and "unsigned, while" in proc.stdout
    # the next run's chain names the break: b's manifest is not what c was chained to
    assert lines[str(c)].startswith("FAIL") and "chain broken" in proc.stdout

    # re-signed with the forger's own key: signed, but not by a trusted key
    forger, _ = generate()
    from opslib import signing
    (b / "EVIDENCE_MANIFEST.json").write_text(json.dumps(
        signing.sign(forged, signing._private_key(forger)), indent=2))
    proc = opslib_run("verify", str(b), env=env)
    assert proc.returncode == 1 and "not a trusted key" in proc.stdout


def test_unsigned_runs_verify_as_integrity_only_and_a_removed_run_breaks_the_chain(reports):
    import shutil

    a, b, c = _signed_runs(reports, 3, {})
    proc = opslib_run("verify", str(reports))
    assert proc.returncode == 0 and proc.stdout.count("integrity only; chain intact") == 3
    shutil.rmtree(b)
    proc = opslib_run("verify", str(reports))
    assert proc.returncode == 1 and "the run before this one was removed or rewritten" in proc.stdout


# ----------------------------------------------------------------------------- interrupted runs
def test_a_run_stranded_in_staging_is_removed_on_the_next_start_and_staging_is_private(reports):
    stranded = reports / ".staging" / "run-abandoned"
    stranded.mkdir(parents=True)
    (stranded / "health.ipynb").write_text(f"unredacted {TOKEN}")
    (reports / ".staging" / "run-abandoned.pid").write_text("999999999")  # no such process
    proc = opslib_run("run", "health", env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0
    assert not stranded.exists() and "left by an interrupted run" in proc.stderr
    assert (reports / ".staging").stat().st_mode & 0o777 == 0o700
    assert [p for p in (reports / ".staging").iterdir() if p.is_dir()] == []


def test_staging_of_a_live_run_is_never_taken_for_stranded(tmp_path):
    # triage runs several runbooks in one process: one run's start must not remove the
    # staging of another that is being created (owner marker written, folder not yet there)
    from opslib import runner

    root = tmp_path / ".staging"
    root.mkdir()
    (root / "run-creating.pid").write_text(str(os.getpid()))          # folder comes next
    (root / "run-going").mkdir()
    (root / "run-going.pid").write_text(str(os.getpid()))
    (root / "run-dead").mkdir()
    (root / "run-dead.pid").write_text("999999999")
    (root / "run-ownerless").mkdir()
    (root / "run-published.pid").write_text("999999999")               # its folder was renamed
    runner._remove_stranded(root)
    assert sorted(p.name for p in root.iterdir()) == ["run-creating.pid", "run-going",
                                                      "run-going.pid"]
    staging = runner._make_staging(tmp_path)
    assert staging.is_dir() and (staging.parent / f"{staging.name}.pid").read_text() == str(os.getpid())
    assert staging.stat().st_mode & 0o777 == 0o700


def test_a_full_disk_while_packing_is_a_clear_error_with_nothing_half_written(reports, monkeypatch):
    import errno

    from opslib import runner

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "write_manifest", full)
    proc = opslib_run("run", "health", "--incident", "inc-full",
                      env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 2 and "the disk is full" in proc.stderr
    assert "Traceback" not in proc.stderr
    incident = reports / "inc-full"
    assert not incident.exists() or [p for p in incident.iterdir() if p.is_dir()] == []
    assert [p for p in (reports / ".staging").iterdir() if p.is_dir()] == []


def test_a_keyword_dsn_password_with_a_space_is_redacted_in_libpq_errors(reports):
    """libpq splits ``password=Canary Xq7Zr2Lm9P`` at the space and echoes the second part in
    its error; every form of the password is masked, wherever the error goes."""
    from datetime import datetime, timezone

    dsn = "host=127.0.0.1 port=1 user=postgres password=Canary Xq7Zr2Lm9P dbname=postgres"

    def ok(_request):
        return Reply(200, {"status": "ok", "timestamp": datetime.now(timezone.utc).isoformat()})

    with LocalHTTPServer(ok) as app:
        proc = opslib_run("run", "health", "--app-url", app.url, "-p", "probes=1",
                          env=clean_env(OPSLIB_REPORTS=str(reports), DATABASE_URL=dsn))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run(reports)
    f = json.loads((run / "findings.json").read_text())
    assert any(x["id"].startswith("db-") and x["severity"] != "ok" for x in f["findings"])
    everything = _everything(run) + proc.stdout.encode() + proc.stderr.encode()
    assert b"Xq7Zr2Lm9P" not in everything


# ----------------------------------------------------------------------------- slow and big
def _raw_server(respond):
    """A TCP server on 127.0.0.1 that answers each connection with ``respond(conn)``."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=respond, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return sock


def test_a_server_that_trickles_its_answer_is_cut_off_at_the_total_deadline():
    """A byte a second never trips a per-read timeout; the whole call has a deadline."""
    import time

    from opslib.sources.http import probe
    from opslib.session import Session

    def trickle(conn):
        try:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
            for _ in range(100):
                conn.sendall(b"x")
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    sock = _raw_server(trickle)
    try:
        started = time.monotonic()
        with Session("live") as session:
            result = probe(session, f"http://127.0.0.1:{sock.getsockname()[1]}/health",
                           timeout=1.0)
        took = time.monotonic() - started
    finally:
        sock.close()
    assert result.error == "timeout" and "total deadline" in result.error_detail
    assert took < 5, f"waited {took:.1f} s for a server that trickles"


def test_a_huge_answer_is_capped_in_raw_and_says_so(tmp_path):
    from opslib import session as session_mod
    from opslib.session import Session

    big = b"y" * (session_mod.MAX_BODY + 1000)
    with LocalHTTPServer(lambda r: Reply(200, big)) as server:
        with Session("record", raw_dir=tmp_path / "raw") as session:
            r = session.client("app").get(server.url + "/big")
    assert len(r.content) == session_mod.MAX_BODY
    assert r.headers["opslib-truncated"].startswith("kept the first")
    stored, = (tmp_path / "raw" / "http").glob("*.json")
    assert stored.stat().st_size < session_mod.MAX_BODY * 1.1


# ----------------------------------------------------------------------------- canary sweep
CANARIES = {
    "FLY_API_TOKEN": "fo1_SweepCanaryTok3nAbCdEfGhIjKlMnOpQrStUvWx",
    "SUPABASE_ACCESS_TOKEN": "sbp_" + "5eedcafe" * 5,
    "SUPABASE_ANON_KEY": "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiIsInN3ZWVwIjoxfQ.SweepSig0123456789",
    "DATABASE_URL": "postgresql://postgres:Sweep-Canary-Pw-77@127.0.0.1:1/postgres",
}


def _forms(secret: str) -> list[bytes]:
    from urllib.parse import quote

    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), quote(secret).encode(),
            quote(secret, safe="").encode(), raw.hex().encode(), json.dumps(secret).encode(),
            secret.encode("utf-16-le")]


def test_no_secret_reaches_the_evidence_in_any_encoding_even_when_servers_echo_it(reports):
    """Every outside system here echoes what it was sent (headers, query, body) back in its
    answer — as broken proxies and debug endpoints do — in text and in bytes that are not
    UTF-8. No canary may reach any byte of the evidence, in any encoding, nor the terminal."""
    def echo(request):
        seen = json.dumps({"path": request.path, "headers": request.headers,
                           "body": request.body.decode("utf-8", "replace")})
        if request.path.startswith("/health"):
            return Reply(500, b"\xff\xfe" + seen.encode())
        return Reply(502, seen)

    env = clean_env(OPSLIB_REPORTS=str(reports), **CANARIES)
    with LocalHTTPServer(echo) as server:
        env.update(FLY_FLAPS_BASE_URL=server.url, FLY_API_BASE_URL=server.url,
                   FLY_PROMETHEUS_URL=server.url, SUPABASE_URL=server.url,
                   SUPABASE_API_BASE_URL=server.url, SUPABASE_STATUS_URL=server.url,
                   FLY_INCIDENTS_URL=server.url + "/incidents")
        outputs = ""
        for runbook in ("health", "auth", "monitoring", "database", "backups"):
            proc = opslib_run("run", runbook, "--app", "live-app", "--app-url", server.url,
                              "--incident", "sweep", env=env)
            assert proc.returncode in (0, 1), proc.stdout + proc.stderr
            outputs += proc.stdout + proc.stderr
    everything = b"".join(_everything(run) for run in (reports / "sweep").iterdir()
                          if run.is_dir()) + outputs.encode()
    leaks = [(name, form[:24]) for name, secret in CANARIES.items()
             for form in _forms(secret) if form in everything]
    password = b"Sweep-Canary-Pw-77"
    assert not leaks and password not in everything, leaks


def test_a_live_run_given_only_a_url_is_not_filed_with_the_demo_runs(reports):
    with LocalHTTPServer(lambda r: Reply(200, {"status": "ok", "timestamp": "x"})) as app:
        proc = opslib_run("run", "health", "--app-url", app.url, "-p", "probes=1",
                          env=clean_env(OPSLIB_REPORTS=str(reports)))
    assert proc.returncode == 0
    run = only_run(reports)
    assert not run.parent.name.startswith("demo-") and run.parent.name.startswith("127-")


def test_a_malformed_supabase_project_answer_is_unknown_not_ok_or_down():
    from opslib.runbooks import database

    for project in ({}, {"status": None}, {"status": 7}, ["not", "a", "project"]):
        f, = database.assess_project(project, None, None, None, "ref")
        assert (f.id, f.severity) == ("supabase-project", "unknown"), project
    f, = database.assess_project({"status": "INACTIVE"}, None, None, None, "ref")
    assert f.severity == "critical" and f.title == "project is INACTIVE"
    # a status the spec does not list (or UNKNOWN) is no verdict: never "CRITICAL project is ok"
    for status in ("ok", "UNKNOWN", "active_healthy"):
        f, = database.assess_project({"status": status}, None, None, None, "ref")
        assert f.severity == "unknown" and "project is" not in f.title, status


def test_logs_that_could_not_be_read_never_say_no_incident_signals(reports):
    """Blind is not green: when the logs API cannot be read, neither the logs runbook nor a
    runbook's "recent logs" section claims the logs were quiet."""
    env = clean_env(OPSLIB_REPORTS=str(reports), FLY_API_TOKEN=TOKEN,
                    FLY_API_BASE_URL="http://127.0.0.1:9", FLY_FLAPS_BASE_URL="http://127.0.0.1:9")
    for runbook in ("logs", "memory"):
        proc = opslib_run("run", runbook, "--app", "live-app", "--incident", "blind", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "no incident signals" not in proc.stdout.lower()
    for run in run_dirs(reports):
        found = json.loads((run / "findings.json").read_text())
        assert found["severity"] == "unknown", (run.name, found["severity"])
        assert "logs.no_signals" not in [f["id"] for f in found["findings"]], run.name
