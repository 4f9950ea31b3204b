"""Small helpers shared by the runbooks' charts (matplotlib ``Figure``s, never pyplot)."""
from __future__ import annotations

from typing import Any


def time_axis(ax: Any) -> None:
    """HH:MM ticks in UTC on a time-series axis, labelled so."""
    import matplotlib.dates as mdates

    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz="UTC"))
    ax.set_xlabel("UTC")
