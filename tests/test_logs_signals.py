"""Each incident signal is raised by the texts real programs print; hard negatives raise none."""

from __future__ import annotations

import io

import pytest

from opslib.logscan import SIGNALS, analyze, findings_from_logs
from opslib.logscan.analysis import summarize_counts
from tests.test_logs_samples import (
    A,
    B,
    C,
    HARD_NEGATIVES,
    HEALTH_FAIL,
    HEALTH_PASS,
    OOM_INIT,
    OOM_KERNEL,
    SIGNAL_MESSAGES,
    E,
    fly_text,
    incident,
)


def run_text(entries: list[E], **kw) -> object:
    data = "".join(fly_text(e) + "\n" for e in entries).encode()
    return analyze(io.BytesIO(data), **kw)


@pytest.mark.parametrize("sid,message", [(sid, m) for sid, ms in SIGNAL_MESSAGES.items() for m in ms])
def test_signal_raised_by_real_message(sid: str, message: str) -> None:
    provider = "proxy" if message.startswith("[P") else "app"
    r = run_text([E(10, provider, A, "iad", "info", message)])
    assert summarize_counts(r) == {sid: 1}, r.signals
    s = r.signal(sid)
    assert s["runbook"] == SIGNALS[sid].runbook
    assert s["instances"] == [A] and s["regions"] == ["iad"]
    assert s["first_seen"] == s["last_seen"] == "2024-05-28T12:00:10.000Z"
    assert s["examples"] == [fly_text(E(10, provider, A, "iad", "info", message))]


@pytest.mark.parametrize("message", HARD_NEGATIVES)
def test_hard_negative_raises_nothing(message: str) -> None:
    r = run_text([E(5, "app", A, "iad", "info", message)])
    assert r.signals == []
    assert r.parsed == r.lines_read == 1


def test_hard_negatives_together_raise_nothing_even_at_error_level() -> None:
    entries = [E(i, "app", A, "iad", "error" if i % 2 else "info", m) for i, m in enumerate(HARD_NEGATIVES)]
    r = run_text(entries)
    assert r.signals == []
    # …while the seed's grep still counts them (that is the point of signals)
    assert r.categories["errors"] >= 6


def test_incident_stream_resolves_stateful_signals() -> None:
    r = run_text(incident())
    counts = summarize_counts(r)
    assert counts["oom_kill"] == 1  # kernel + init lines are one kill
    assert r.suppressed["oom_duplicate_line"] == 1
    assert counts["proxy_pc01"] == 2  # PC01 and PR04 whose last error is PC01
    assert r.signal("proxy_pc01")["details"] == {"PC01": 1, "PR04 > PC01": 1}
    assert counts["health_check_failing"] == 1  # B, 120 s; A's 4 s boot blip is not a signal
    assert r.signal("health_check_failing")["instances"] == [B]
    assert r.suppressed["health_check_blip"] == 1
    assert counts["health_check_recovered"] == 1
    assert counts["health_check_warning"] == 1 and r.signal("health_check_warning")["instances"] == [C]
    assert counts["app_exit_nonzero"] == 3
    assert counts["crash_loop"] == 1 and r.signal("crash_loop")["instances"] == [C]
    assert counts["http_5xx"] == 1
    oom = r.signal("oom_kill")
    assert oom["instances"] == [B] and oom["first_seen"] == "2024-05-28T12:01:00.000Z"
    assert oom["details"] == {"process node": 1}
    assert "PCI: Fatal" not in " ".join(x for s in r.signals for x in s["examples"])


def test_oom_init_line_alone_is_one_kill_and_far_apart_lines_are_two() -> None:
    r = run_text([E(0, "app", A, "iad", "info", OOM_INIT)])
    assert summarize_counts(r) == {"oom_kill": 1}
    r = run_text([E(0, "app", A, "iad", "info", OOM_KERNEL), E(300, "app", A, "iad", "info", OOM_INIT)])
    assert summarize_counts(r)["oom_kill"] == 2
    # same seconds, different machines: two kills
    r = run_text([E(0, "app", A, "iad", "info", OOM_KERNEL), E(0.5, "app", B, "iad", "info", OOM_INIT)])
    assert summarize_counts(r)["oom_kill"] == 2


def test_health_failure_without_recovery_is_failing_not_recovered() -> None:
    r = run_text([E(0, "health", A, "iad", "error", HEALTH_FAIL), E(10, "app", A, "iad", "info", "still booting")])
    assert summarize_counts(r) == {"health_check_failing": 1}
    r = run_text([E(0, "health", A, "iad", "error", HEALTH_FAIL), E(31, "health", A, "iad", "info", HEALTH_PASS)])
    assert summarize_counts(r) == {"health_check_failing": 1, "health_check_recovered": 1}


NODE_DNS = ["Error: getaddrinfo ENOTFOUND base",
            "    at GetAddrInfoReqWrap.onlookup [as oncomplete] (node:dns:107:26)",
            "    at /app/node_modules/pg-pool/index.js:45:11"]
PYTHON_DNS = ['  File "/usr/local/lib/python3.12/site-packages/asyncpg/connect_utils.py", line 710, in _connect_addr',
              "    return await __connect_addr(params, timeout, True, *args)",
              "socket.gaierror: [Errno -2] Name or service not known"]


@pytest.mark.parametrize("trace", [NODE_DNS, PYTHON_DNS], ids=["node-error-then-frames", "python-frames-then-error"])
def test_a_failed_lookup_next_to_a_postgres_driver_frame_is_the_database_s(trace: list[str], monkeypatch) -> None:
    lines = [E(i * 0.001, "app", A, "iad", "error", m) for i, m in enumerate(trace)]
    assert summarize_counts(run_text(lines)) == {"db_dns_failure": 1}
    # another machine's lines in between change nothing; a 1 kB chunk cut inside the trace neither
    mixed = [lines[0], E(0.0005, "app", B, "iad", "info", "GET /x 200"), *lines[1:]]
    assert summarize_counts(run_text(mixed)) == {"db_dns_failure": 1}
    # a chunk boundary inside the trace: the pairing counts lines across chunks
    from opslib.logscan import engine
    monkeypatch.setattr(engine, "CHUNK_BYTES", 1000)
    for n in range(250, 400):
        filler = [E(0, "app", B, "iad", "info", f"{i:04d} " + "x" * 200) for i in range(n)]
        data = "".join(fly_text(e) + "\n" for e in filler + lines).encode()
        results, _, _ = engine.run(io.BytesIO(data), None, "auto", None, None, 3, 0, workers=1)
        if n < results[0].lines < n + len(lines):
            break
    else:
        raise AssertionError("no filler length put a chunk boundary inside the trace")
    assert summarize_counts(run_text(filler + lines)) == {"db_dns_failure": 1}


def test_a_failed_lookup_without_a_driver_frame_nearby_is_not_the_database_s() -> None:
    http = ["Error: getaddrinfo ENOTFOUND api.stripe.com",
            "    at GetAddrInfoReqWrap.onlookup [as oncomplete] (node:dns:107:26)",
            "    at /app/node_modules/axios/lib/adapters/http.js:512:11"]
    assert summarize_counts(run_text([E(i, "app", A, "iad", "error", m) for i, m in enumerate(http)])) == {}
    # the driver's frame on another machine, or far down the log, is another story
    far = [E(0, "app", A, "iad", "error", NODE_DNS[0])] + [
        E(0.01, "app", A, "iad", "info", f"GET /x/{i} 200") for i in range(13)] + [
        E(0.02, "app", A, "iad", "error", NODE_DNS[2])]
    assert summarize_counts(run_text(far)) == {}
    other = [E(0, "app", A, "iad", "error", NODE_DNS[0]), E(0, "app", B, "iad", "error", NODE_DNS[2])]
    assert summarize_counts(run_text(other)) == {}
    late = [E(0, "app", A, "iad", "error", NODE_DNS[0]), E(60, "app", A, "iad", "error", NODE_DNS[2])]
    assert summarize_counts(run_text(late)) == {}


@pytest.mark.parametrize("message", [
    " INFO Main child exited with signal (with signal 'SIGSEGV', core dumped? true)",
    " INFO Main child exited with signal (with signal 'SIGABRT', core dumped? false)",
    "/bin/sh: 1: node: not found",
    'exec: "gunicorn": executable file not found in $PATH',
    "      throw er; // Unhandled 'error' event",
    "Node.js v20.11.1",
])
def test_fatal_signals_and_missing_commands_are_crashes(message: str) -> None:
    assert summarize_counts(run_text([E(0, "app", A, "iad", "info", message)])) == {"app_crashed": 1}


@pytest.mark.parametrize("message", [
    "System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown.",
    "memory allocation of 1073741824 bytes failed",
    'eheap_alloc: Cannot allocate 2348124 bytes of memory (of type "heap").',
    "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)",
    "[FATAL] failed to allocate memory (NoMemoryError)",
    "OSError: [Errno 12] Cannot allocate memory",
    "bash: fork: Cannot allocate memory",
])
def test_each_runtime_s_out_of_memory_wording(message: str) -> None:
    assert summarize_counts(run_text([E(0, "app", A, "iad", "error", message)])) == {"app_out_of_memory": 1}


def test_a_node_version_in_passing_is_no_crash() -> None:
    assert summarize_counts(run_text([E(0, "app", A, "iad", "info", "Starting on Node.js v20.11.1 (pid 7)")])) == {}


def test_jwt_expired_noise_is_ok_until_it_is_frequent() -> None:
    msg = SIGNAL_MESSAGES["jwt_expired"][1]
    few = run_text([E(i, "app", A, "iad", "info", msg) for i in range(3)])
    many = run_text([E(i, "app", A, "iad", "info", msg) for i in range(25)])
    assert few.signal("jwt_expired")["severity"] == "ok"
    assert many.signal("jwt_expired")["severity"] == "warning"


def test_http_5xx_severity_follows_the_seed_error_rate_thresholds() -> None:
    def stream(bad: int, good: int) -> list[E]:
        return ([E(i, "app", A, "iad", "info", f"GET /x {502} 1.0 ms - 0") for i in range(bad)]
                + [E(i, "app", A, "iad", "info", f"GET /x {200} 1.0 ms - 9") for i in range(good)])

    assert run_text(stream(1, 999)).signal("http_5xx")["severity"] == "ok"
    assert run_text(stream(3, 97)).signal("http_5xx")["severity"] == "warning"
    r = run_text(stream(10, 90))
    assert r.signal("http_5xx")["severity"] == "critical"
    assert r.http["error_rate"] == pytest.approx(0.10)
    assert r.status_mix.loc[502, "count"] == 10


@pytest.mark.parametrize("sid,runbook", [
    ("oom_kill", "memory"), ("proxy_pc01", "not-responding"), ("pg_too_many_connections", "database"),
    ("supavisor_pool_exhausted", "database"), ("jwt_clock_skew", "auth"), ("tls_cert_expired", "tls"),
    ("crash_loop", "not-responding"), ("http_5xx", "not-responding"), ("proxy_pt05", "tls"),
])
def test_findings_route_signals_to_runbooks(sid: str, runbook: str) -> None:
    entries = incident() + [E(400 + i, "app", A, "iad", "info", m)
                            for i, m in enumerate(SIGNAL_MESSAGES["pg_too_many_connections"]
                                                  + SIGNAL_MESSAGES["supavisor_pool_exhausted"]
                                                  + SIGNAL_MESSAGES["jwt_clock_skew"]
                                                  + SIGNAL_MESSAGES["tls_cert_expired"]
                                                  + SIGNAL_MESSAGES["proxy_pt05"])]
    findings = {f["id"]: f for f in findings_from_logs(run_text(entries))}
    f = findings[f"logs.{sid}"]
    assert f["runbook"] == runbook
    assert f["severity"] in ("ok", "warning", "critical")
    assert f["evidence"] and all(isinstance(x, str) for x in f["evidence"])
    assert set(f) == {"id", "severity", "title", "detail", "evidence", "runbook"}


def test_findings_order_and_no_signal_case() -> None:
    findings = findings_from_logs(run_text(incident()))
    ranks = [{"critical": 0, "warning": 1, "ok": 2}[f["severity"]] for f in findings]
    assert ranks == sorted(ranks)
    pc01 = next(f for f in findings if f["id"] == "logs.proxy_pc01")
    assert "Machine refused connection" in pc01["title"] and "0.0.0.0" in pc01["detail"]
    quiet = findings_from_logs(run_text([E(0, "app", A, "iad", "info", "hello")]))
    assert [f["id"] for f in quiet] == ["logs.no_signals"] and quiet[0]["severity"] == "ok"


def test_same_template_different_digits_are_judged_per_line() -> None:
    # one template each, but digits decide: the match cache must not carry the first answer over
    lines = ["Error: connect ECONNREFUSED 10.0.0.5:9091", "Error: connect ECONNREFUSED 10.0.0.5:6543",
             " INFO Main child exited normally with code: 0", " INFO Main child exited normally with code: 3",
             "JWT expired", "JWT expired"]
    r = run_text([E(i, "app", A, "iad", "info", m) for i, m in enumerate(lines)])
    assert summarize_counts(r) == {"db_connection_refused": 1, "app_exit_nonzero": 1, "jwt_expired": 2}
    assert r.signal("app_exit_nonzero")["details"] == {"exit code 3": 1}
    assert r.signal("jwt_expired")["examples"] == [fly_text(E(4, "app", A, "iad", "info", "JWT expired")),
                                                   fly_text(E(5, "app", A, "iad", "info", "JWT expired"))]


def test_the_signal_table_is_the_one_place_a_signal_is_defined():
    """Each entry of `signals.TABLE` is a whole signal: every phrase it lists raises it on its
    own (the kernel scans for it, the entry matches it), every signal the engine can raise has
    a title, runbook and severity, and a family entry always has a way to match."""
    from opslib.logscan import signals as S

    keywords = {kw.decode() for kw, _ in S.kernel_keywords()}
    for e in S.TABLE:
        if not e.family:
            continue
        assert e.any or e.regex is not None or e.find is not None, e.id
        assert set(e.keywords or e.any) <= keywords, e.id
        if e.any and e.regex is None and e.context is None:
            for phrase in e.any:
                assert e.id in [sid for sid, _ in S.match(phrase, e.family)], (e.id, phrase)
    raised = {e.id for e in S.TABLE if e.family and e.id != "proxy"} - S.STATEFUL
    assert raised <= set(S.SIGNALS)
    for d in S.SIGNALS.values():
        assert d.title and d.runbook and d.severity in ("ok", "warning", "critical"), d.id


def test_phrases_of_families_cached_per_template_survive_masking() -> None:
    """Signal matches of the families that read no digits are shared by every line of a
    template, so a phrase of theirs must not depend on a token the template masks, unless
    that token holds letters beyond hex (then the line opts out of the cache)."""
    from opslib.logscan import signals as S
    from opslib.logscan.chunks import _TOKEN, _masked, _WORDS

    bad = [(e.id, w) for e in S.TABLE if e.family and not e.family & S.DIGIT_SENSITIVE
           for w in (e.any or ()) + (e.keywords or ())
           if any(_masked(t) and not _WORDS.search(t) for t in _TOKEN.findall(w))]
    assert bad == []


def test_a_phrase_glued_into_a_masked_token_is_judged_per_line() -> None:
    """Two lines of one template whose masked tokens differ in what they hide: each gets its
    own signals, whichever comes first (the cache must not hand one's to the other)."""
    for order in ((0, 1), (1, 0)):
        msgs = ["auth failed: refresh_token_not_found42", "auth failed: pgrst300x42"]  # both "auth failed: <*>"
        r = run_text([E(k, "app", A, "iad", "info", msgs[i]) for k, i in enumerate(order)])
        assert summarize_counts(r) == {"refresh_token_failures": 1, "jwt_secret_missing": 1}, order


def test_the_kernel_finds_every_keyword_at_every_offset_and_at_the_ends_of_a_line():
    """The keyword scan looks up every other position (two trigrams per keyword cover both
    parities): each keyword must still be found wherever it starts, first or last in its
    line, in any case."""
    import numpy as np

    from opslib.logscan import _kernel as K
    from opslib.logscan import engine
    from opslib.logscan import signals as S

    words = S.kernel_keywords()
    lines, want = [], []
    for kw, act in words:
        for pre in ("", "~", "~~", "~~~"):
            for post in ("", "~"):
                for text in (kw, kw.upper()):
                    lines.append(pre.encode() + text + post.encode())
                    want.append(act)
    # through the two calls a worker makes, with a writable block as files are read into: the
    # signatures `make setup` compiled (a kernel called on its own would compile again)
    buf = np.frombuffer(bytearray(b"\n".join(lines) + b"\n"), np.uint8)
    w = engine.Worker("bare", None, None, 3, 0)
    w._grow(len(lines) + 1)
    rows = w.lines
    n, _ = K.stage_a(buf, K.MODE_BARE, False, rows, w.inames, w.rnames, engine._JSON_KEYS)
    assert n == len(lines)
    K.stage_b(buf, n, rows, K._LOWER, K._COMB, engine._KW, w.tt, -(1 << 62), 1 << 62, w.acc, 3)
    fl, cand = rows.fl[:n], rows.cand[:n]
    missed = [lines[i] for i in range(n)
              if (fl[i] & 7) & want[i] != want[i] & 7 or (int(cand[i]) & (want[i] >> 8)) != want[i] >> 8]
    assert missed == []
