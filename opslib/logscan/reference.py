"""The log analysis in plain Python, one line at a time: the readable statement of what the
compiled engine computes, and the oracle its fast paths are tested against.

For each message (a bare line, or the message part of a parsed line):

* **categories** — the seed's three greps, as ``LC_ALL=C grep -ci`` counts them;
* **signal hits** — every family of ``signals.TABLE`` tried on every line (the engine tries
  only the families whose keywords the kernel found: the oracle shows that filter never
  drops a line a rule would match); stateful event kinds are counted as raw events;
* **templates** — ``engine.mask_template`` of each message.

It ignores time windows, machines and the cross-line resolution (OOM pairs, health
episodes, crash loops) and HTTP status rates, which are separate, small, pure-Python steps
of ``signals.resolve_events`` and ``analysis``.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import signals as S
from .engine import mask_template
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
