"""The log analysis in plain Python, one line at a time: the readable statement of what the
compiled engine computes, the oracle its fast paths are tested against, and the engine
itself for small inputs of log entries (the runbooks' few thousand logs-API lines), which it
analyses faster than the compiled kernels can be loaded.

`ReferenceWorker` analyses entries completely (what `engine.Worker` does for a chunk of
bytes); `analyze_messages` states the per-line part on bare messages. For each message:

* **categories** — the seed's three greps, as ``LC_ALL=C grep -ci`` counts them;
* **signal hits** — every family of ``signals.TABLE`` tried on every line (the engine tries
  only the families whose keywords the kernel found: the oracle shows that filter never
  drops a line a rule would match); stateful event kinds are counted as raw events;
* **templates** — ``chunks.mask_template`` of each message.

The cross-line resolution (OOM pairs, health episodes, crash loops) and the report are
separate, small, pure-Python steps (``signals.resolve_events``, ``analysis``) that both
paths share.
"""
from __future__ import annotations

import calendar
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from . import layout
from . import signals as S
from .chunks import (TEXT_CAP, ChunkResult, SigAcc, decode_message, hides_words, mask_template, record_hits,
                     template_text)
from .inputs import entry_record
from .report import CATEGORY_DEFINITIONS

ALL_FAMILIES = sum(S._RULES)  # every family bit  # noqa: SLF001 - the table's own index
_CATEGORY_RX = {name: re.compile(pattern.encode(), re.I) for name, pattern in CATEGORY_DEFINITIONS.items()}


@dataclass
class ReferenceResult:
    lines: int = 0
    categories: Counter = field(default_factory=Counter)
    hits: Counter = field(default_factory=Counter)  # signal id or stateful event kind -> lines
    templates: Counter = field(default_factory=Counter)


def analyze_messages(messages: Iterable[str]) -> ReferenceResult:
    """The per-line analysis of ``messages`` (each one line, without its newline)."""
    out = ReferenceResult()
    for msg in messages:
        out.lines += 1
        raw = msg.encode("utf-8", "surrogateescape")
        for name, rx in _CATEGORY_RX.items():
            if rx.search(raw):
                out.categories[name] += 1
        for sid, _details in S.match(msg, ALL_FAMILIES):
            out.hits[sid] += 1
        out.templates[mask_template(msg)] += 1
    return out


# --- the whole analysis of log entries ----------------------------------------------------------
# Each entry is read as the compiled engine reads it: as its NDJSON record (`to_ndjson_line`),
# so the seed's categories count what grep counts on that line.
_TRIGGERS = {w.encode(): kind for kind, words in S.STATUS_TRIGGERS.items() for w in words}
_STATUS_AFTER_METHOD = re.compile(rb'(\d{3})(?:[,"\\]|$)')
_STATUS_AFTER_KEY = re.compile(rb'[":= \\]{1,4}+(\d{3})(?!\d)')
_STATUS_AFTER_PHRASE = re.compile(rb"(\d{3}) (?:[A-Z][A-Za-z' -]{0,40} | )?in \d")
_STATUS_IN_PIPES = re.compile(rb"[^|]{0,47}\| +(\d{3}) +\|")
_LEADING_DIGITS = re.compile(rb"\d{0,19}")


def http_status(line: bytes) -> int:
    """The HTTP status of an access line, 0 when it has none: after the first trigger in the
    line (case-insensitive, `signals.STATUS_TRIGGERS`) that is followed by one (100-599):

    * ``METHOD /path`` (or a URL, or ``*``), then a token of three digits, alone or before a
      comma or the quote (or backslash) that closes a JSON string, among the next seven
      (``GET /x HTTP/1.1" 502 12``);
    * a status key, then one to four of ``"`` ``:`` ``=`` space backslash, and three digits
      not followed by a fourth (``status=502``, ``"status":502``, ``statusCode: 502``, and
      ``\\"status\\":502`` in a JSON-escaped message);
    * ``Completed ``/``Sent ``, three digits, a space, then ``in <digit>`` after at most one
      more space or after a reason phrase: ``[A-Z][A-Za-z' -]{0,40}`` and a space
      (Rails, Phoenix);
    * ``[GIN] ``, then the first ``|`` within 48 bytes, spaces, three digits, spaces, ``|``.
    """
    low = line.lower()
    triggers = sorted((q, t) for t in _TRIGGERS for q in _occurrences(low, t))
    for q, trigger in triggers:
        kind = _TRIGGERS[trigger]
        value = 0
        if kind == layout.A_STATUS_METHOD:
            rest = line[q + len(trigger):]
            if rest[:1] in (b"/", b"h", b"*"):  # a path, a URL or OPTIONS *
                for token in re.split(rb" +", rest)[1:8]:
                    t = _STATUS_AFTER_METHOD.match(token)
                    if t:
                        value = int(t.group(1))
                        break
        else:
            if kind == layout.A_STATUS_KEY:  # a key's own trailing separators (status=) count
                rest, rx = line[q + len(trigger.rstrip(b"=: ")):], _STATUS_AFTER_KEY
            else:
                rest = line[q + len(trigger):]
                rx = _STATUS_AFTER_PHRASE if kind == layout.A_STATUS_PHRASE else _STATUS_IN_PIPES
            m = rx.match(rest)
            value = int(m.group(1)) if m else 0
        if 100 <= value <= 599:
            return value
    return 0


def _occurrences(text: bytes, word: bytes) -> Iterator[int]:
    q = text.find(word)
    while q >= 0:
        yield q
        q = text.find(word, q + 1)


def timestamp_ms(value: bytes) -> int | None:
    """Epoch milliseconds of an entry's timestamp, from its value's JSON text (as the engine
    reads the NDJSON record).

    A string starts with ``YYYY-MM-DD[T ]HH:MM:SS``, then an optional fraction (``.`` or ``,``
    and digits; milliseconds kept) and an optional zone (``Z``, or ``±HH``, ``±HHMM``,
    ``±HH:MM`` when five bytes or more remain; no zone is UTC); what follows is ignored. A
    number is an epoch by its digits: 9-10 seconds, 11-13 milliseconds, 14-16 microseconds,
    17-19 nanoseconds (a fraction is dropped).
    """
    if value[:1] == b'"':
        return _rfc3339_ms(value[1:-1])
    digits = _LEADING_DIGITS.match(value).group()
    n = len(digits)
    if n < 9:
        return None
    v = int(digits)
    return v * 1000 if n <= 10 else v if n <= 13 else v // 1000 if n <= 16 else v // 1_000_000


_RFC3339_HEAD = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)")


def _rfc3339_ms(raw: bytes) -> int | None:
    m = _RFC3339_HEAD.match(raw)
    if not m:
        return None
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups())
    if not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 60):
        return None
    rest = raw[m.end():]
    ms = 0
    if rest[:1] in (b".", b","):
        frac = re.match(rb"\d*", rest[1:]).group()
        if not frac:
            return None
        ms = int((frac[:3] + b"00")[:3])
        rest = rest[1 + len(frac):]
    offset = 0
    if rest[:1] in (b"+", b"-") and len(rest) >= 5:
        z = re.match(rb"[+-](\d\d)(?::?(\d\d))?", rest)
        if not z:
            return None
        offset = (int(z.group(1)) * 60 + int(z.group(2) or 0)) * 60 * (-1 if rest[:1] == b"-" else 1)
    # day 31 of a short month runs on into the next, as the kernel's civil-day arithmetic does
    t = (calendar.timegm((y, mo, 1, hh, mi, 0)) + (d - 1) * 86400 + ss - offset) * 1000 + ms
    return t if t >= 0 else None


def _json_text(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


def _name(value: bytes) -> str:
    """An instance or region name from its value's JSON text, as the engine keeps it (the
    string's text, escapes included); not a string: no name."""
    return value[1:-1].decode("utf-8", "replace") if value[:1] == b'"' else ""


@dataclass
class _Line:
    """One entry as the analysis sees it."""

    raw: bytes  # its NDJSON record, without the newline
    parsed: bool
    ts: int | None  # epoch ms
    instance: str
    region: str
    message: str


def _read_entry(item: object) -> _Line:
    """An entry as the engine reads it (`inputs.entry_record`)."""
    fields, record = entry_record(item)
    line = record[:-1]
    if fields is None:  # not an entry: an unparsed line holding what the item was
        return _Line(line, False, None, "", "", decode_message(line, True))
    return _Line(line, True, timestamp_ms(_json_text(fields.get("timestamp"))),
                 _name(_json_text(fields.get("instance") or "")), _name(_json_text(fields.get("region") or "")),
                 fields.get("message") or "")


_DIGIT_WORDS = [(w.decode(), act >> 8 & S.DIGIT_SENSITIVE) for w, act in S.kernel_keywords()
                if act >> 8 & S.DIGIT_SENSITIVE]


def match_line(message: str, by_template: dict[str, list[S.Hit]], template: str) -> list[S.Hit]:
    """The signal hits of one message. Families whose rules read no digits are matched once
    per template (their outcome depends on it alone, unless a masked token could hide a
    phrase: `chunks.hides_words`; the engine relies on the same); the
    others are matched when the message holds one of their keywords (the engine's filter:
    `analyze_messages`, which tries every family on every line, shows it drops nothing)."""
    if hides_words(message):  # a phrase could hide in a masked token: this line alone
        hits = S.match(message, ALL_FAMILIES & ~S.DIGIT_SENSITIVE)
    else:
        hits = by_template.get(template)
        if hits is None:
            hits = by_template[template] = S.match(message, ALL_FAMILIES & ~S.DIGIT_SENSITIVE)
    low = message.lower()
    families = 0
    for word, fam in _DIGIT_WORDS:
        if word in low:
            families |= fam
    return hits + S.match(message, families) if families else hits


class ReferenceWorker:
    """The whole analysis of log entries, line by line, in plain Python: what `engine.Worker`
    computes for a chunk, and the same `ChunkResult` (one chunk, index 0) and totals.

    Signals as `match_line` finds them; the template table has no size limit. The compiled engine must agree with it on every
    input (tests/test_logs_reference.py).
    """

    def __init__(self, since_ms: int | None, until_ms: int | None, examples: int) -> None:
        self.since, self.until, self.examples = since_ms, until_ms, examples
        self._categories = np.zeros(3, np.int64)
        self._statuses = np.zeros(600, np.int64)
        self._totals: dict[str, dict[str, np.ndarray]] = {"instance": {}, "region": {}}
        self._templates: dict[str, list] = {}  # template -> [count, first order, text, example]
        self._by_template: dict[str, list[S.Hit]] = {}

    def process(self, items: Iterable[object]) -> ChunkResult:
        res = ChunkResult(0)
        minutes: dict[int, np.ndarray] = {}
        inst_minute: dict[tuple[int, str], np.ndarray] = {}
        n5 = 0
        for i, item in enumerate(items):
            ln = _read_entry(item)
            res.lines += 1
            res.parsed += ln.parsed
            if ln.ts is not None and not ((self.since is None or ln.ts >= self.since)
                                          and (self.until is None or ln.ts < self.until)):
                res.filtered_out += 1
                continue
            cats = [1 if rx.search(ln.raw) else 0 for rx in _CATEGORY_RX.values()]
            status = http_status(ln.raw)
            measures = np.array([1, *cats, 1 if status >= 500 else 0], np.int64)
            self._categories += measures[1:4]
            if status:
                self._statuses[status] += 1
            for which, name in (("instance", ln.instance), ("region", ln.region)):
                got = self._totals[which]
                got[name] = got.get(name, 0) + measures
            evidence = ln.raw[:TEXT_CAP].decode("utf-8", "replace")
            tmpl = mask_template(ln.message)
            seen = self._templates.get(tmpl)
            if seen is None:
                self._templates[tmpl] = [1, (0, i), template_text(ln.message), evidence]
            else:
                seen[0] += 1
            if ln.ts is not None:
                res.ts_min = ln.ts if res.ts_min is None else min(res.ts_min, ln.ts)
                res.ts_max = ln.ts if res.ts_max is None else max(res.ts_max, ln.ts)
                minute = ln.ts // 60000
                minutes[minute] = minutes.get(minute, 0) + measures
                inst_minute[(minute, ln.instance)] = inst_minute.get((minute, ln.instance), 0) + measures[:2]
            t = ln.ts / 1000.0 if ln.ts is not None else None
            if status >= 500:
                acc = res.signals.setdefault("http_5xx", SigAcc())
                n5 += 1
                acc.count = n5
                acc.first = acc.first or ((0, i), t)
                acc.last = ((0, i), t)
                if len(acc.examples) < self.examples:
                    acc.examples.append(((0, i), ln.raw[:4 * TEXT_CAP].decode("utf-8", "replace")[:TEXT_CAP]))
            if not ln.parsed and len(res.unparsed_examples) < max(self.examples, 5):
                res.unparsed_examples.append(((0, i), ln.raw.decode("utf-8", "replace")[:TEXT_CAP]))
            hits = match_line(ln.message, self._by_template, tmpl)
            if hits:
                record_hits(res, hits, i, t, ln.instance, ln.region, lambda: evidence, self.examples)
        if minutes:
            keys = sorted(minutes)
            res.minute_keys = np.array(keys, np.int64)
            res.minute_counts = np.array([minutes[k] for k in keys], np.int64)
        res.inst_minute = [(m, name, v) for (m, name), v in sorted(inst_minute.items())]
        return res

    def categories(self) -> np.ndarray:
        return self._categories

    def statuses(self) -> np.ndarray:
        return self._statuses

    def other_templates(self) -> int:
        return 0

    def totals(self, which: str) -> dict[str, np.ndarray]:
        return self._totals[which]

    def templates(self) -> dict[str, tuple[int, tuple[int, int], str, str]]:
        return {k: tuple(v) for k, v in self._templates.items()}
