"""The log engine on real excerpts from public issues (tests/logcorpus/): per category, the
share of incidents that raise a signal for the runbook that handles them (recall ≥ 95 %),
and the share of healthy excerpts that raise any warning or critical signal (≤ 5 %).
Every miss and false alarm is printed, so a regression says what it broke."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from opslib.logscan import analyze, findings_from_logs
from tests.logcorpus.validate import CATEGORIES, load, problems

# what an on-call engineer should be sent to, per category
# (a failed release command or a deploy's health-check timeout belongs to the deploy runbook)
EXPECTED = {"database": {"database"}, "crash": {"not-responding", "deploy"},
            "proxy": {"not-responding"}, "health": {"not-responding", "deploy"},
            "auth": {"auth"}, "tls": {"tls"}, "memory": {"memory"}}
MIN_RECALL, MAX_FALSE_ALARMS = 0.95, 0.05


def raised(lines: list[str], tmp: Path) -> list[dict]:
    """The warning/critical signals the engine raises on these lines."""
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f for f in findings_from_logs(analyze(str(tmp)))
            if f["severity"] in ("warning", "critical")]


def test_the_corpus_is_valid_and_big_enough():
    assert problems(load()) == []


def test_recall_per_category_and_false_alarms_on_healthy_logs(tmp_path, capsys):
    hits: dict[str, list[bool]] = defaultdict(list)
    misses: list[str] = []
    for e in load():
        found = raised(e["lines"], tmp_path / f"{e['id']}.log")
        routed = {f.get("runbook") for f in found}
        if e["category"] == "healthy":
            ok = not found
            if not ok:
                misses.append(f"FALSE ALARM {e['id']} ({e['source']}): "
                              + "; ".join(f"{f['severity']} {f['title']}" for f in found))
        else:
            ok = bool(routed & EXPECTED[e["category"]])
            if not ok:
                misses.append(f"MISSED {e['category']} {e['id']} ({e['source']}): got "
                              + (", ".join(f"{f['title']} → {f.get('runbook')}" for f in found)
                                 or "nothing") + f" | {e['lines'][-1][:140]}")
        hits[e["category"]].append(ok)
    report = []
    for c in CATEGORIES:
        rate = sum(hits[c]) / len(hits[c])
        label = "no false alarm" if c == "healthy" else "recall"
        report.append(f"{c:<9} {label} {rate:6.1%} ({sum(hits[c])}/{len(hits[c])})")
    with capsys.disabled():
        print("\nlog corpus:\n  " + "\n  ".join(report + misses))
    for c in EXPECTED:
        assert sum(hits[c]) / len(hits[c]) >= MIN_RECALL, f"{c} recall below 95 % (misses above)"
    false_alarms = 1 - sum(hits["healthy"]) / len(hits["healthy"])
    assert false_alarms <= MAX_FALSE_ALARMS, f"false alarms {false_alarms:.0%} (listed above)"


@pytest.mark.parametrize("category", sorted(EXPECTED))
def test_every_category_has_incidents(category):
    assert any(e["category"] == category for e in load())
