"""The one session every call to the outside goes through: live, record or replay.

* **live**   real calls, nothing written (interactive use without evidence);
* **record** real calls, and every exchange written, redacted, under the run's ``raw/``;
* **replay** answers from a capture folder (a bundled demo scenario or an earlier run's
  ``raw/``), without touching the network; each replayed exchange is written to the new run's
  ``raw/`` too, so a replayed run is itself complete, verifiable evidence.

HTTP is recorded at httpx's transport seam (``httpx.Client(transport=…)``). Anything else —
Postgres queries, TLS handshakes — goes through :meth:`Session.capture`, which records a
JSON-able result (or a :class:`~opslib.errors.SourceError`) under a name.

Capture layout (``raw/``)::

    session.json                 reference time of the run ("now" for every analysis)
    http/0001-<source>.json      {"seq","source","op","key","request","response"|"error","elapsed_ms"}
    <kind>/0002-<source>.json    {"seq","source","op","key","kind","result"|"error","elapsed_ms"}

Replay matches HTTP by ``source METHOD /path?query`` (host-independent, so base-URL overrides
do not matter) and captures by ``kind:source:key``; repeated identical requests are answered
in recorded order. A request the capture does not hold raises :class:`ReplayMissError`.
Every call also appends an event to ``timeline.jsonl``.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict, deque
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import httpx

from .errors import ReplayMissError, SourceError, source_error_from_dict
from .evidence import atomic_write_json, dumps
from .redact import Redactor
from .times import iso, parse_time, utcnow

MODES = ("live", "record", "replay")
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def request_key(source: str, method: str, url: httpx.URL) -> str:
    query = urlencode(sorted(url.params.multi_items()))
    return f"{source} {method.upper()} {url.path}{'?' + query if query else ''}"


class Session:
    """Chooses the transport for every source, records, replays and keeps the timeline.

    Args:
        mode: ``live``, ``record`` or ``replay``.
        raw_dir: where exchanges are written (``record`` and ``replay``); None writes nothing.
        capture_dir: the capture to answer from (``replay``).
        timeline_path: ``timeline.jsonl`` to append events to; None keeps them in memory.
        redactor: masks secrets before anything is written.
        transport_factory: ``source -> httpx.BaseTransport`` for live calls (tests and the
            demo generator inject worlds here); default is a real ``httpx.HTTPTransport``.
        capture_backend: ``(kind, source, key, payload) -> result`` used instead of the live
            callable by :meth:`capture` (the demo generator answers from its world).
        now: reference time; replay takes it from the capture's ``session.json``.
        rewind: on replay, a request whose captured answers were all used is answered again
            from the first (an engineer re-running a Collect cell in JupyterLab); off for
            ``make run``, where a request the live run did not make is a replay miss.
    """

    def __init__(
        self,
        mode: str = "live",
        *,
        raw_dir: str | Path | None = None,
        capture_dir: str | Path | None = None,
        timeline_path: str | Path | None = None,
        redactor: Redactor | None = None,
        transport_factory: Callable[[str], httpx.BaseTransport] | None = None,
        capture_backend: Callable[[str, str, str, Any], Any] | None = None,
        now: datetime | None = None,
        verify: bool | str = True,
        rewind: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.raw_dir = Path(raw_dir) if raw_dir else None
        self.capture_dir = Path(capture_dir) if capture_dir else None
        self.timeline_path = Path(timeline_path) if timeline_path else None
        self.redactor = redactor or Redactor.from_env()
        self.transport_factory = transport_factory
        self.capture_backend = capture_backend
        self.verify = verify
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._clients: list[httpx.Client] = []
        self._replay: dict[str, deque] = defaultdict(deque)
        self._captured: dict[str, list[dict]] = {}
        self.rewind = rewind
        self.capture_meta: dict[str, Any] = {}
        if mode == "replay":
            if self.capture_dir is None:
                raise ValueError("replay needs a capture_dir")
            self._load_capture(self.capture_dir)
            captured_now = parse_time(self.capture_meta.get("now"))
            now = now or captured_now
        self._now = now or utcnow()
        if self.raw_dir is not None:
            meta = {"schema": 1, "now": iso(self._now), "mode": mode}
            if mode == "replay":
                meta["replayed_from"] = self.capture_meta.get("replayed_from") or str(self.capture_dir)
            atomic_write_json(self.raw_dir / "session.json", meta)

    # ------------------------------------------------------------------ time
    def now(self) -> datetime:
        """The run's reference time: wall clock live, the captured time on replay."""
        return self._now

    def clock(self, name: str) -> datetime:
        """Our UTC clock at this moment of the run (a measurement's own time: when a probe
        was sent or answered), recorded so a replay sees the same instant. A capture made
        before these were recorded answers with the run's reference time."""
        key = f"clock:local-clock:{name}"
        if self.mode == "replay" and not self._replay.get(key) and not (
                self.rewind and self._captured.get(key)):
            return self._now
        value = self.capture("clock", "local-clock", name, lambda: iso(utcnow()),
                             op=f"local clock at {name}", payload=name)
        parsed = parse_time(value)
        if parsed is None:  # pragma: no cover - we wrote it ourselves
            raise ValueError(f"recorded clock {value!r} is not a time")
        return parsed

    # ------------------------------------------------------------------ replay loading
    def _load_capture(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ReplayMissError(f"replay capture {folder} does not exist",
                                  hint="give a run folder (its raw/ is used) or a capture folder")
        meta_path = folder / "session.json"
        if meta_path.exists():
            self.capture_meta = json.loads(meta_path.read_text(encoding="utf-8"))
        records = []
        for path in folder.glob("*/*.json"):
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ReplayMissError(f"replay capture file {path} is not valid JSON: {exc}") from exc
            if isinstance(rec, dict) and "key" in rec and "seq" in rec:
                records.append(rec)
        for rec in sorted(records, key=lambda r: r["seq"]):
            self._replay[rec["key"]].append(rec)
        self._captured = {k: list(q) for k, q in self._replay.items()}

    def _take(self, key: str) -> dict:
        with self._lock:
            queue = self._replay.get(key)
            if not queue and self.rewind and self._captured.get(key):
                queue = self._replay[key] = deque(self._captured[key])
            if not queue:
                held = sorted(self._replay)
                raise ReplayMissError(
                    f"replay capture {self.capture_dir} holds no (more) answers for {key!r}",
                    hint=("the runbook asked for something the captured run did not; "
                          f"the capture holds {len(held)} other request(s)"
                          + (f", e.g. {held[0]!r}" if held else "")))
            return queue.popleft()

    # ------------------------------------------------------------------ writing
    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _write(self, kind: str, record: dict) -> None:
        if self.raw_dir is None:
            return
        if self.mode != "replay":
            # A replayed record was redacted when it was recorded; the runner's final sweep
            # still checks every file for this environment's secret values.
            record = self.redactor.obj(record)
        safe_source = "".join(c if c.isalnum() or c in "-_" else "_" for c in record["source"])
        # A replayed exchange copies a capture already on disk: no fsync per file (it made
        # replay 1.4-1.8x slower than the analysis alone; bench/collect_latency.py).
        atomic_write_json(self.raw_dir / kind / f"{record['seq']:04d}-{safe_source}.json", record,
                          durable=self.mode != "replay")

    def event(self, **fields: Any) -> None:
        """Append one event to the timeline (UTC time, source, operation, target, …)."""
        ev = {"ts": iso(utcnow()), **fields}
        if self.mode == "replay":
            ev["replayed"] = True
        ev = self.redactor.obj(ev)
        with self._lock:
            self.events.append(ev)
            if self.timeline_path is not None:
                self.timeline_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.timeline_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(ev, ensure_ascii=False, default=str) + "\n")

    # ------------------------------------------------------------------ HTTP
    def client(self, source: str, *, base_url: str = "", headers: dict | None = None,
               timeout: httpx.Timeout | float | None = None) -> httpx.Client:
        """An ``httpx.Client`` for ``source`` whose transport live-calls, records or replays."""
        if self.mode == "replay":
            transport: httpx.BaseTransport = _ReplayTransport(self, source)
        else:
            inner = (self.transport_factory(source) if self.transport_factory
                     else httpx.HTTPTransport(verify=self.verify, retries=0))
            transport = _RecordingTransport(self, source, inner)
        client = httpx.Client(transport=transport, base_url=base_url, headers=headers or {},
                              timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
                              follow_redirects=False)
        self._clients.append(client)
        return client

    def _http_record(self, source: str, request: httpx.Request, *, seq: int,
                     response: httpx.Response | None, error: dict | None,
                     elapsed_ms: float) -> None:
        op = request.extensions.get("opslib_op") or f"{request.method} {request.url.path}"
        key = request_key(source, request.method, request.url)
        rec: dict[str, Any] = {
            "seq": seq, "source": source, "op": op, "key": key, "elapsed_ms": round(elapsed_ms, 3),
            "request": {"method": request.method, "url": str(request.url),
                        "headers": self.redactor.headers(request.headers.items())},
        }
        size = 0
        if response is not None:
            body = response.content
            size = len(body)
            resp: dict[str, Any] = {"status": response.status_code,
                                    "headers": self.redactor.headers(response.headers.items())}
            try:
                resp["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                # Not UTF-8: redact the text it holds *before* encoding it (base64 would hide
                # a secret from every later sweep); undecodable bytes are kept as they are.
                text = body.decode("utf-8", "surrogateescape")
                clean = self.redactor.text(text)
                resp["body_b64"] = base64.b64encode(
                    clean.encode("utf-8", "surrogateescape")).decode("ascii")
                if clean != text:
                    resp["body_redacted"] = True
            rec["response"] = resp
            outcome = f"http {response.status_code}"
        else:
            rec["error"] = error
            outcome = f"error: {error['type']}" if error else "error"
        self._write("http", rec)
        self.event(source=source, operation=op, target=f"{request.method} {request.url}",
                   duration_ms=round(elapsed_ms, 1), outcome=outcome, size=size)

    # ------------------------------------------------------------------ other captures
    def capture(self, kind: str, source: str, key: str, fn: Callable[[], Any], *,
                op: str = "", target: str = "", payload: Any = None) -> Any:
        """Run ``fn`` (live/record) or answer from the capture (replay), recording the result.

        ``fn`` returns a JSON-able value or raises :class:`SourceError`; either is recorded and
        given back identically on replay.
        """
        full_key = f"{kind}:{source}:{key}"
        op = op or key
        seq = self._next_seq()
        if self.mode == "replay":
            rec = self._take(full_key)
            elapsed = float(rec.get("elapsed_ms", 0.0))
            self._write(kind, {**rec, "seq": seq})
            self.event(source=source, operation=op, target=target, duration_ms=elapsed,
                       outcome="error" if rec.get("error") else "ok", size=0)
            if rec.get("error"):
                exc = source_error_from_dict(rec["error"])
                exc.elapsed_ms = elapsed  # type: ignore[attr-defined]
                raise exc
            return rec.get("result")
        t0 = time.perf_counter()
        rec = {"seq": seq, "kind": kind, "source": source, "op": op, "key": full_key,
               "target": target}
        try:
            if self.capture_backend is not None:
                result = self.capture_backend(kind, source, key, payload)
            else:
                result = fn()
        except SourceError as exc:
            elapsed = (time.perf_counter() - t0) * 1000
            rec.update(error=exc.to_dict(), elapsed_ms=round(getattr(exc, "elapsed_ms", elapsed), 3))
            self._write(kind, rec)
            self.event(source=source, operation=op, target=target, duration_ms=round(elapsed, 1),
                       outcome=f"error: {exc.kind}", size=0)
            raise
        elapsed = (time.perf_counter() - t0) * 1000
        result = self.redactor.obj(result)
        rec.update(result=result, elapsed_ms=round(elapsed, 3))
        self._write(kind, rec)
        self.event(source=source, operation=op, target=target, duration_ms=round(elapsed, 1),
                   outcome="ok", size=len(dumps(result)))
        return result

    def configured(self, name: str, present: bool) -> bool:
        """Whether configuration ``name`` (an environment variable) was present.

        Recorded like any other observation, so a replay skips exactly the sources the live
        run skipped instead of asking the capture for calls that were never made.
        """
        return bool(self.capture("config", "environment", name, lambda: bool(present),
                                 op=f"configured {name}", payload=name))

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


MAX_BODY = 4 * 1024 * 1024  # bytes of one answer kept (and recorded under raw/)


def _bounded(response: httpx.Response, request: httpx.Request, t0: float) -> httpx.Response:
    """Read the body against a total deadline (connect + read timeout for the whole call: a
    server that trickles a byte a second is cut off, not waited for) and a size cap (the
    rest is dropped and the answer says so in ``opslib-truncated``)."""
    timeout = request.extensions.get("timeout") or {}
    budget = sum(t for t in (timeout.get("connect"), timeout.get("read")) if t) or None
    chunks, size, truncated = [], 0, False
    try:
        for chunk in response.stream:
            if budget is not None and time.perf_counter() - t0 > budget:
                raise httpx.ReadTimeout(f"the answer took longer than its total deadline of "
                                        f"{budget:g} s", request=request)
            if size + len(chunk) > MAX_BODY:
                chunks.append(chunk[:MAX_BODY - size])
                truncated = True
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        response.close()
    headers = response.headers.copy()  # still encoded: the client decodes, as without us
    if truncated:
        headers.pop("content-length", None)
    out = httpx.Response(response.status_code, headers=headers,
                         content=b"".join(chunks), request=request,
                         extensions=response.extensions)
    if truncated:
        out.headers["opslib-truncated"] = f"kept the first {MAX_BODY} bytes"
    return out


class _RecordingTransport(httpx.BaseTransport):
    """Calls the inner transport; writes the exchange (record mode) and a timeline event."""

    def __init__(self, session: Session, source: str, inner: httpx.BaseTransport) -> None:
        self.session, self.source, self.inner = session, source, inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        seq = self.session._next_seq()
        t0 = time.perf_counter()
        try:
            response = _bounded(self.inner.handle_request(request), request, t0)
        except httpx.TransportError as exc:
            elapsed = getattr(exc, "elapsed_ms", None) or (time.perf_counter() - t0) * 1000
            self.session._http_record(self.source, request, seq=seq, response=None,
                                      error={"type": type(exc).__name__,
                                             "message": str(exc)}, elapsed_ms=elapsed)
            exc.elapsed_ms = elapsed  # type: ignore[attr-defined]
            raise
        elapsed = float(response.extensions.get("elapsed_ms", (time.perf_counter() - t0) * 1000))
        response.extensions["elapsed_ms"] = elapsed
        self.session._http_record(self.source, request, seq=seq, response=response, error=None,
                                  elapsed_ms=elapsed)
        return response

    def close(self) -> None:
        self.inner.close()


class _ReplayTransport(httpx.BaseTransport):
    """Answers from the capture; raises the recorded transport error where there was one."""

    def __init__(self, session: Session, source: str) -> None:
        self.session, self.source = session, source

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        key = request_key(self.source, request.method, request.url)
        rec = self.session._take(key)
        seq = self.session._next_seq()
        elapsed = float(rec.get("elapsed_ms", 0.0))
        if rec.get("error"):
            err = rec["error"]
            cls = getattr(httpx, err.get("type", ""), None)
            if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
                cls = httpx.TransportError
            exc = cls(err.get("message", ""), request=request)
            exc.elapsed_ms = elapsed  # type: ignore[attr-defined]
            self.session._http_record(self.source, request, seq=seq, response=None, error=err,
                                      elapsed_ms=elapsed)
            raise exc
        resp = rec["response"]
        content = (base64.b64decode(resp["body_b64"]) if "body_b64" in resp
                   else resp.get("body", "").encode("utf-8"))
        headers = [(k, v) for k, v in resp.get("headers", {}).items()
                   if k not in ("content-encoding", "transfer-encoding", "content-length")]
        response = httpx.Response(resp["status"], headers=headers, content=content,
                                  request=request, extensions={"elapsed_ms": elapsed})
        self.session._http_record(self.source, request, seq=seq, response=response, error=None,
                                  elapsed_ms=elapsed)
        return response
