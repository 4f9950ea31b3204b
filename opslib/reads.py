"""One shape for every outside read: what was fetched, and whether it was measured, failed
or skipped.

A runbook's ``collect`` declares its reads and lets :func:`gather` do them::

    readings = gather(session, target, [
        Read("machines", "the app's machines", fly.list_machines, fly.MACHINES),
        Read("recovery", "pg_is_in_recovery()", recovery_query, postgres.POSTGRES),
        Read("probes", "GET /health", lambda: probe_n(...)),       # no configuration needed
    ])

* Each :class:`Source` is connected once per ``gather``: its ``connect`` returns a client or
  raises :class:`~opslib.errors.NotConfigured` (after recording, through the session,
  whether its configuration was present, so a replay skips exactly what the live run
  skipped). Every read of a source that is not configured is *skipped*, saying what to set.
* The reads then run concurrently; one that raises :class:`~opslib.errors.SourceError` is
  *failed* (the error carries its hint), one that returns is *measured*.
* The result, :class:`Readings`, is in declaration order whatever order the reads finished
  in, so skipped and failed sources are listed the same way on every run.

Each :class:`Reading` is frozen and exactly one of the three.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import NotConfigured, SourceError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .config import Target
    from .session import Session

MEASURED, FAILED, SKIPPED = "measured", "failed", "skipped"
MAX_WORKERS = 8


@dataclass(frozen=True)
class Source:
    """An outside system: its name for people, and how a run connects to it.

    ``connect(session, target)`` returns the client the reads of this source are given, or
    raises :class:`NotConfigured`. A client with a ``close()`` is closed after the reads.
    """

    name: str
    connect: Callable[["Session", "Target"], Any]


def require(session: "Session", target: "Target", source: str, *names: str,
            hint: str = "") -> list[str]:
    """The values of the environment variables ``names``, or :class:`NotConfigured` naming
    the missing ones. Whether each was set is recorded, so a replay decides the same way."""
    values = [target.env(n) for n in names]
    present = [session.configured(n, bool(v)) for n, v in zip(names, values)]
    missing = [n for n, ok in zip(names, present) if not ok]
    if missing:
        raise NotConfigured(source, " and ".join(missing), hint=hint)
    return values


@dataclass(frozen=True)
class Read:
    """One thing to fetch: ``key`` names it in the result, ``what`` says it for people.

    ``fetch`` is called with the source's client (or with nothing when ``source`` is None)
    and returns the value or raises :class:`SourceError` / :class:`NotConfigured`.

    ``context=True`` marks a read the verdict does not rest on (recent logs, status pages,
    the version for the header): when it cannot be made the run says so, but stays able to
    say "ok". Any other read that is not measured makes the run's verdict ``unknown`` (see
    :func:`coverage`).
    """

    key: str
    what: str
    fetch: Callable[..., Any]
    source: Source | None = None
    context: bool = False


@dataclass(frozen=True)
class Reading:
    """What one read got: ``measured`` (``value``), ``failed`` (``error``, whose ``hint``
    says what to do) or ``skipped`` (``needs``: what to set, ``hint``)."""

    key: str
    what: str
    source: str
    outcome: str
    value: Any = None
    error: SourceError | None = None
    needs: str = ""
    hint: str = ""
    context: bool = False

    @property
    def measured(self) -> bool:
        return self.outcome == MEASURED

    @property
    def failed(self) -> bool:
        return self.outcome == FAILED

    @property
    def skipped(self) -> bool:
        return self.outcome == SKIPPED

    @property
    def detail(self) -> str:
        """The failure and its hint, or what to set; empty when measured."""
        if self.error is not None:
            return f"{self.error.message} {self.error.hint}".strip()
        if self.skipped:
            return f"set {self.needs}. {self.hint}".strip()
        return ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "what": self.what, "source": self.source,
                               "outcome": self.outcome,
                               "basis": "context" if self.context else "verdict"}
        if self.error is not None:
            out["error"] = {"kind": self.error.kind, "message": self.error.message,
                            "hint": self.error.hint}
        if self.skipped:
            out["needs"], out["hint"] = self.needs, self.hint
        return out


class Readings(Mapping[str, Reading]):
    """The readings of one or more :func:`gather` calls, in declaration order."""

    def __init__(self, readings: Sequence[Reading] = ()) -> None:
        self._by_key: dict[str, Reading] = {}
        for r in readings:
            if r.key in self._by_key:
                raise ValueError(f"two reads named {r.key!r}")
            self._by_key[r.key] = r

    def __getitem__(self, key: str) -> Reading:
        return self._by_key[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> "Readings":
        """Readings measured from values already in hand (offline analysis, tests)."""
        return cls([Reading(k, k, "", MEASURED, value=v) for k, v in values.items()])

    def __or__(self, other: "Readings") -> "Readings":
        return Readings([*self.values(), *other.values()])

    def value(self, key: str, default: Any = None) -> Any:
        """The measured value of ``key``; ``default`` when it failed, was skipped or not read."""
        r = self._by_key.get(key)
        return r.value if r is not None and r.measured else default

    def error(self, key: str) -> SourceError | None:
        r = self._by_key.get(key)
        return r.error if r is not None else None

    def with_outcome(self, outcome: str) -> list[Reading]:
        return [r for r in self.values() if r.outcome == outcome]

    def skipped_sources(self) -> list[Reading]:
        """One skipped reading per source (the first), in order: what the run could not see."""
        seen: set[str] = set()
        out = []
        for r in self.with_outcome(SKIPPED):
            if r.source not in seen:
                seen.add(r.source)
                out.append(r)
        return out

    def frame(self) -> "pd.DataFrame":
        """What was read: ``source``, ``what``, ``outcome``, ``detail``."""
        import pandas as pd

        return pd.DataFrame([{"source": r.source, "what": r.what, "outcome": r.outcome,
                              "detail": r.detail} for r in self.values()],
                            columns=["source", "what", "outcome", "detail"])


def coverage(readings: Iterable[Reading]) -> dict[str, Any]:
    """What a verdict rests on (the ``coverage`` block of findings.json): every read with its
    outcome, and ``blind`` — the reads the verdict needs (not ``context``) that were not
    measured. ``complete`` is true only when something was read and nothing is blind."""
    checks = [r.to_dict() for r in readings]
    blind = [c["key"] for c in checks if c["basis"] == "verdict" and c["outcome"] != MEASURED]
    return {"checks": checks,
            "measured": [c["key"] for c in checks if c["outcome"] == MEASURED],
            "failed": [c["key"] for c in checks if c["outcome"] == FAILED],
            "skipped": [c["key"] for c in checks if c["outcome"] == SKIPPED],
            "blind": blind,
            "complete": bool(checks) and not blind}


class measured:
    """A data-class attribute that is the measured value of one reading (or one part of it).

    ``machines = measured()`` reads ``self.readings.value("machines")``; ``db =
    measured("database")`` names the key; ``capacity = measured("database", part="capacity")``
    reads that item of the value. ``None`` (or ``empty()``, e.g. ``empty=list``) when the read
    failed, was skipped or was not made. The owner has a ``readings`` attribute.
    """

    def __init__(self, key: str = "", *, part: str = "",
                 empty: Callable[[], Any] | None = None) -> None:
        self.key, self.part, self.empty = key, part, empty

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = self.key or name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.readings.value(self.key)
        if self.part:
            value = (value or {}).get(self.part)
        return self.empty() if value is None and self.empty else value


def _connect(session: "Session", target: "Target",
             source: Source) -> tuple[Any, NotConfigured | SourceError | None]:
    try:
        return source.connect(session, target), None
    except (NotConfigured, SourceError) as exc:
        return None, exc


def _do(read: Read, client: Any) -> Reading:
    name = read.source.name if read.source else ""
    try:
        value = read.fetch(client) if read.source is not None else read.fetch()
    except NotConfigured as exc:
        return _reading(read, exc.source or name, SKIPPED, needs=exc.needs, hint=exc.hint)
    except SourceError as exc:
        return _reading(read, name or exc.system, FAILED, error=exc)
    return _reading(read, name, MEASURED, value=value)


def _reading(read: Read, source: str, outcome: str, **kw: Any) -> Reading:
    return Reading(read.key, read.what, source, outcome, context=read.context, **kw)


def gather(session: "Session", target: "Target", reads: Sequence[Read]) -> Readings:
    """Connect each source once, do every read concurrently; the readings in ``reads`` order.

    Sources are connected in the order they first appear (a connection may record what was
    configured, and replay reads those records back in order).
    """
    clients: dict[str, tuple[Any, NotConfigured | SourceError | None]] = {}
    for read in reads:
        if read.source is not None and read.source.name not in clients:
            clients[read.source.name] = _connect(session, target, read.source)
    results: list[Reading | None] = [None] * len(reads)
    runnable = []
    for i, read in enumerate(reads):
        if read.source is None:
            runnable.append(i)
            continue
        _client, problem = clients[read.source.name]
        if isinstance(problem, NotConfigured):
            results[i] = _reading(read, read.source.name, SKIPPED, needs=problem.needs,
                                  hint=problem.hint)
        elif problem is not None:
            results[i] = _reading(read, read.source.name, FAILED, error=problem)
        else:
            runnable.append(i)
    try:
        if len(runnable) == 1:
            i = runnable[0]
            results[i] = _do(reads[i], _client_of(clients, reads[i]))
        elif runnable:
            with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(runnable))) as pool:
                futures = {i: pool.submit(_do, reads[i], _client_of(clients, reads[i]))
                           for i in runnable}
                for i, fut in futures.items():
                    results[i] = fut.result()
    finally:
        for client, _problem in clients.values():
            close = getattr(client, "close", None)
            if callable(close):
                close()
    return Readings([r for r in results if r is not None])


def _client_of(clients: dict[str, tuple[Any, Any]], read: Read) -> Any:
    return clients[read.source.name][0] if read.source is not None else None
