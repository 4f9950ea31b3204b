"""What a chunk of log lines contributes to a report, and the per-line helpers both analysis
paths share: the compiled engine (`engine.Worker`) and the plain-Python one
(`reference.ReferenceWorker`). Nothing here loads numba."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import signals as S

TEXT_CAP = 500  # characters kept of an example line (evidence stays readable, memory bounded)
MEASURES = ("lines", "errors", "auth", "database", "http_5xx")
_TOKEN = re.compile(r"[A-Za-z0-9_.\-][A-Za-z0-9_.\-@]*")
_CODE_TOKEN = re.compile(r"[A-Z]{2,}[0-9]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_DIGIT = re.compile(r"[0-9]")
_WORDS = re.compile(r"[g-zG-Z]")


def mask_template(message: str) -> str:
    """The template of a message: tokens holding a digit or an ``@`` (ids, numbers, addresses,
    e-mails) or made of eight or more hex digits (ids without a digit, ``deadbeefcafe``)
    become ``<*>``; codes such as PC01 or PGRST303 stay. Quoted words stay: signal
    matches are cached per template, so a template must never hide the word a signal reads.

    Same rule as the kernel's hash, so the text shown is the text that was counted.
    """
    return _TOKEN.sub(lambda m: "<*>" if _masked(m.group(0)) else m.group(0), message)


def _masked(tok: str) -> bool:
    if _DIGIT.search(tok):
        return not (len(tok) <= 10 and _CODE_TOKEN.fullmatch(tok))
    return "@" in tok or (len(tok) >= 8 and bool(_HEX.fullmatch(tok)))


def hides_words(message: str) -> bool:
    """Whether a token the template masks holds letters beyond hex (``g``-``z``): a signal
    phrase could hide in it (``refresh_token_not_found42``, ``xPGRST300``, an e-mail), so
    the message's signal matches must not be shared through its template. Numbers,
    addresses, UUIDs and hex ids hold none. The kernel's ``F_HIDES`` flag is the same rule."""
    return any(_masked(t) and _WORDS.search(t) for t in _TOKEN.findall(message))


@dataclass
class SigAcc:
    """Running facts about one signal."""

    count: int = 0
    first: tuple[tuple[int, int], float | None] | None = None
    last: tuple[tuple[int, int], float | None] | None = None
    instances: Counter = field(default_factory=Counter)
    regions: Counter = field(default_factory=Counter)
    examples: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    minutes: Counter = field(default_factory=Counter)
    details: Counter = field(default_factory=Counter)

    def add(self, order: tuple[int, int], ts: float | None, inst: str, region: str, text: str,
            detail: str | None, max_examples: int) -> None:
        self.count += 1
        if self.first is None or order < self.first[0]:
            self.first = (order, ts)
        if self.last is None or order > self.last[0]:
            self.last = (order, ts)
        if inst:
            self.instances[inst] += 1
        if region:
            self.regions[region] += 1
        if len(self.examples) < max_examples:
            self.examples.append((order, text))
        if ts is not None:
            self.minutes[int(ts // 60) * 60] += 1
        if detail:
            self.details[detail] += 1

    def merge(self, other: SigAcc, max_examples: int) -> None:
        self.count += other.count
        if other.first is not None and (self.first is None or other.first[0] < self.first[0]):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last[0] > self.last[0]):
            self.last = other.last
        self.instances.update(other.instances)
        self.regions.update(other.regions)
        self.examples = sorted(self.examples + other.examples)[:max_examples]
        self.minutes.update(other.minutes)
        self.details.update(other.details)


@dataclass
class ChunkResult:
    """What one chunk contributes to the report."""

    index: int
    lines: int = 0
    parsed: int = 0
    filtered_out: int = 0
    minute_keys: np.ndarray | None = None
    minute_counts: np.ndarray | None = None
    inst_minute: list[tuple[int, str, np.ndarray]] = field(default_factory=list)
    ts_min: int | None = None
    ts_max: int | None = None
    signals: dict[str, SigAcc] = field(default_factory=dict)
    events: list[S.Event] = field(default_factory=list)
    crashes: list[S.Event] = field(default_factory=list)
    unparsed_examples: list[tuple[tuple[int, int], str]] = field(default_factory=list)
    dated_by_anchor: bool = False


def record_hits(res: ChunkResult, hits: list[S.Hit], line: int, t: float | None, instance: str, region: str,
                text_of: Callable[[], str], examples: int) -> None:
    """Add one line's signal hits to its chunk's result: stateful kinds and crashes become
    events for the cross-line resolution, the rest count at once. ``text_of()`` gives the
    line's evidence text, read only when it is kept."""
    order = (res.index, line)
    text = None
    for sid, details in hits:
        if sid in S.STATEFUL or sid in S.CRASHES:
            if text is None:
                text = text_of()
            ev = S.Event(order, t, instance, region, sid, details, text)
            if sid in S.STATEFUL:
                res.events.append(ev)
                continue
            res.crashes.append(ev)
        detail = None
        if "codes" in details:
            detail = " > ".join(details["codes"])
        elif "exit_code" in details:
            detail = f"exit code {details['exit_code']}"
        acc = res.signals.get(sid)
        if acc is None:
            acc = res.signals[sid] = SigAcc()
        if len(acc.examples) < examples and text is None:
            text = text_of()
        acc.add(order, t, instance, region, text or "", detail, examples)


def template_text(message: str) -> str:
    """The template shown for a message: `mask_template` of its first ``TEXT_CAP``
    characters (the table can hold tens of thousands of templates)."""
    return mask_template(message[:TEXT_CAP]) + ("…" if len(message) > TEXT_CAP else "")


def decode_message(raw: bytes, json_escapes: bool) -> str:
    """A message's text from its bytes; in JSON input its escapes are decoded when they can be."""
    if json_escapes and b"\\" in raw:
        try:
            return json.loads(b'"' + raw + b'"')
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")
