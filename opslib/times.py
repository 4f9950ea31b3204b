"""Time, the one place it is parsed: timestamps, durations, and "since/until" values.

* :func:`parse_time` reads what the platforms print: RFC 3339 / ISO 8601 (``Z`` or an
  offset, nanoseconds, a comma before the fraction) and epoch numbers in seconds,
  milliseconds, microseconds or nanoseconds. It answers ``None`` for anything else: a
  timestamp that cannot be read is missing data, not an error of the run.
* :func:`parse_when` reads what a *user* types for ``--since``/``--until``: the forms above
  or a duration before now (``90s``, ``15m``, ``2h``, ``1d``); it raises ``ValueError``
  with the accepted forms.
* :func:`parse_duration` reads a Prometheus duration (``5m``, ``6h``) into seconds.

Every datetime returned is timezone-aware UTC.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import UsageError

UTC = timezone.utc
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BEFORE_NOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*$", re.I)
_BEFORE_NOW_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """``2026-11-26T17:09:15.123456Z``: UTC, ``Z`` suffix."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch_seconds(value: float) -> float:
    """An epoch number in s, ms, µs or ns, as seconds (told apart by magnitude)."""
    v = float(value)
    for scale, above in ((1e9, 1e17), (1e6, 1e14), (1e3, 1e11)):
        if abs(v) > above:
            return v / scale
    return v


def _iso_text(text: str) -> datetime | None:
    t = text.strip().replace(",", ".")
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    if "." in t:  # Python 3.11 reads at most microseconds; Fly prints nanoseconds
        head, _, rest = t.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        t = f"{head}.{(digits + '000000')[:6]}{rest[len(digits):]}"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    """A timestamp as the platforms print it → aware UTC datetime; None when absent or unreadable."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        if value != value:
            return None
        try:
            return datetime.fromtimestamp(epoch_seconds(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    if text.isdigit():
        return parse_time(int(text))
    return _iso_text(text)


def parse_when(value: Any, now: datetime | None = None) -> datetime | None:
    """A user's ``since``/``until``: a timestamp, or a duration before ``now`` (``15m``, ``2h``).

    Raises:
        ValueError: the value is neither (the message shows the accepted forms).
    """
    if value is None or value == "":
        return None
    m = _BEFORE_NOW.match(str(value)) if isinstance(value, str) else None
    if m:
        try:
            return (now or utcnow()) - timedelta(seconds=float(m.group(1))
                                                 * _BEFORE_NOW_S[m.group(2).lower()])
        except (OverflowError, ValueError):
            raise ValueError(f"{value!r} reaches back before any log: Fly keeps about 7 "
                             "days, use e.g. 1d or 2h") from None
    dt = parse_time(value)
    if dt is None:
        raise ValueError(f"cannot read the time {value!r}: use ISO 8601 (2024-05-28T12:00:00Z) "
                         "or a duration before now (15m, 2h, 1d)")
    return dt


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``90s``, ``5m``, ``6h`` or ``1d``.

    Raises:
        UsageError: the text is not one number and one unit.
    """
    m = _DURATION.match(str(text).strip())
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"duration {text!r} must be a positive number and a unit "
                         "(ms, s, m, h, d, w), e.g. 5m or 6h")
    return int(m.group(1)) * _UNIT_S[m.group(2)]
