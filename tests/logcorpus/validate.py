"""Check the real-log corpus: ``python tests/logcorpus/validate.py`` (exit 1 with the problems).

Every excerpt has an id, a provenance (``owner/repo#N``), a stack, a category and non-empty
lines; ids are unique; nothing in it looks like a secret, an e-mail address or a public IP
address that was not replaced by a documentation address; and the corpus is big and varied
enough to measure recall on (sizes below).
"""
from __future__ import annotations

import ipaddress
import re
import sys
from collections import Counter
from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parent / "corpus.yml"
CATEGORIES = ("database", "crash", "proxy", "health", "auth", "tls", "memory", "healthy")
MIN_EXCERPTS, MIN_STACKS, MIN_HEALTHY = 150, 8, 30

_SOURCE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+#\d+$")
_EMAIL = re.compile(r"\b[\w.+-]+@(?:[a-z0-9-]+\.)+[a-z]{2,}\b", re.I)
_JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}")
_KEYS = re.compile(r"(sbp_[0-9a-f]{20,}|FlyV1 fm\d_|fo1_[\w-]{20,}|sk_live_\w+|AKIA[0-9A-Z]{16})")
_IPV4 = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?![\w.])")
# addresses that identify no one: documentation, private, loopback, link-local
_ALLOWED_NETS = [ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "10.0.0.0/8", "172.16.0.0/12",
    "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8")]


def load(path: Path = CORPUS) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def problems(entries: list[dict]) -> list[str]:
    out: list[str] = []
    if not isinstance(entries, list):
        return ["the corpus is not a list of excerpts"]
    seen: set[str] = set()
    for n, e in enumerate(entries):
        where = f"excerpt {n} ({e.get('id', '?') if isinstance(e, dict) else '?'})"
        if not isinstance(e, dict):
            out.append(f"{where}: not a mapping")
            continue
        missing = [k for k in ("id", "source", "stack", "category", "lines") if not e.get(k)]
        if missing:
            out.append(f"{where}: missing {', '.join(missing)}")
            continue
        if e["id"] in seen:
            out.append(f"{where}: duplicate id")
        seen.add(e["id"])
        if not _SOURCE.match(str(e["source"])):
            out.append(f"{where}: source {e['source']!r} is not owner/repo#N")
        if e["category"] not in CATEGORIES:
            out.append(f"{where}: category {e['category']!r} is not one of {', '.join(CATEGORIES)}")
        if not isinstance(e["lines"], list) or not all(isinstance(x, str) and x.strip()
                                                       for x in e["lines"]):
            out.append(f"{where}: lines must be non-empty strings")
            continue
        text = "\n".join(e["lines"])
        for pattern, what in ((_EMAIL, "an e-mail address"), (_JWT, "a JWT"),
                              (_KEYS, "an API key or token")):
            if pattern.search(text):
                out.append(f"{where}: contains {what}: anonymise it")
        for ip in _IPV4.findall(text):
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if not any(addr in net for net in _ALLOWED_NETS):
                out.append(f"{where}: public IP address {ip}: use 203.0.113.x")
    cats = Counter(e.get("category") for e in entries if isinstance(e, dict))
    stacks = {e.get("stack") for e in entries if isinstance(e, dict) and e.get("category") != "healthy"}
    if len(entries) < MIN_EXCERPTS:
        out.append(f"{len(entries)} excerpts; at least {MIN_EXCERPTS} are needed")
    if len(stacks) < MIN_STACKS:
        out.append(f"{len(stacks)} stacks among the incidents; at least {MIN_STACKS} are needed")
    if cats["healthy"] < MIN_HEALTHY:
        out.append(f"{cats['healthy']} healthy excerpts; at least {MIN_HEALTHY} are needed")
    for c in CATEGORIES:
        if not cats[c]:
            out.append(f"no excerpt of category {c}")
    return out


def main() -> int:
    entries = load()
    found = problems(entries)
    for p in found:
        print(p, file=sys.stderr)
    cats = Counter(e["category"] for e in entries)
    stacks = Counter(e["stack"] for e in entries)
    print(f"{len(entries)} excerpts; categories: "
          + ", ".join(f"{c} {cats[c]}" for c in CATEGORIES)
          + "; stacks: " + ", ".join(f"{s} {n}" for s, n in stacks.most_common()))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
