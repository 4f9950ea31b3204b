"""HTML building blocks for the review site: escaping, links, badges and the page shell.

Everything that comes from evidence goes through :func:`esc` (text and attribute values) or
:func:`href` (paths), so findings text holding HTML or script is shown as text. Each page also
carries a Content-Security-Policy that allows no script at all, as a second line of defence.
"""
from __future__ import annotations

import html
from typing import Any, Iterable
from urllib.parse import quote

from .. import __version__

CSP = ("default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
       "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")

SEV_COLOURS = {"critical": "#b71c1c", "warning": "#b26a00", "unknown": "#4527a0",
               "ok": "#2e7d32", "info": "#1565c0"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header.top{background:#263238;color:#fff;padding:10px 24px}
header.top a{color:#cfd8dc;margin-right:14px}
main{padding:12px 24px 40px;max-width:1400px}
h1{font-size:22px;margin:10px 0 6px}h2{font-size:18px;margin:22px 0 8px}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eceff1;font-weight:600}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f1f3f4;padding:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:12px;font-weight:600;white-space:nowrap}
.sev-critical{background:#b71c1c}.sev-warning{background:#b26a00}.sev-unknown{background:#4527a0}
.sev-ok{background:#2e7d32}.sev-info{background:#1565c0}
.st-bad{background:#6a1b9a}.st-ok{background:#546e7a}
.verified{color:#2e7d32;font-weight:600}
.integrity-fail{background:#ffebee}
.flag-red{display:inline-block;background:#c62828;color:#fff;font-weight:700;padding:1px 7px;border-radius:3px}
.flag-warn{display:inline-block;background:#ef6c00;color:#fff;font-weight:700;padding:1px 7px;border-radius:3px}
.alert{border-left:5px solid #c62828;background:#ffebee;padding:8px 12px;margin:10px 0}
.note{border-left:5px solid #ef6c00;background:#fff3e0;padding:8px 12px;margin:10px 0}
.next{border-left:5px solid #1565c0;background:#e3f2fd;padding:8px 12px;margin:10px 0;font-size:15px}
.muted{color:#666}.small{font-size:12px}
.pager a,.pager span{margin-right:8px}
.incident{background:#fff;border:1px solid #ddd;padding:4px 14px 8px;margin:14px 0}
.act-planned{color:#1565c0;font-weight:600}.act-applied{color:#2e7d32;font-weight:700}
.act-refused,.act-failed{color:#c62828;font-weight:700}.act-skipped{color:#616161}
tr.notable td{background:#fffde7}tr.err td{background:#ffebee}
"""


def esc(value: Any) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def url(path: str) -> str:
    """Percent-encode a relative path (folder names come from disk and may hold anything)."""
    return quote(path, safe="/")


def rel(from_page: str, to_path: str) -> str:
    """Relative link from one site file to another, both relative to reports/.

    Both are normalised relative paths (no ``.``/``..``), so this is plain prefix arithmetic
    (``posixpath.relpath`` makes them absolute first, which dominated the build's time).
    """
    src = from_page.split("/")[:-1]
    dst = to_path.split("/")
    n = 0
    while n < len(src) and n < len(dst) - 1 and src[n] == dst[n]:
        n += 1
    return "/".join([".."] * (len(src) - n) + dst[n:]) or "."


def link(from_page: str, to_path: str, text: Any, cls: str = "") -> str:
    c = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(url(rel(from_page, to_path)))}"{c}>{esc(text)}</a>'


def sev_badge(severity: str) -> str:
    s = severity if severity in SEV_COLOURS else "unknown"
    return f'<span class="badge sev-{s}">{esc(str(severity or "unknown").upper())}</span>'


def status_badge(status: str) -> str:
    cls = "st-ok" if status == "ok" else "st-bad"
    return f'<span class="badge {cls}">{esc(status or "unknown")}</span>'


def action_status(status: str) -> str:
    cls = status if status in ("planned", "applied", "refused", "failed", "skipped") else "planned"
    mark = {"planned": "◇ ", "applied": "◆ ", "refused": "✖ ", "failed": "✖ "}.get(cls, "")
    return f'<span class="act-{cls}">{mark}{esc(status)}</span>'


def when_text(ts: str) -> str:
    """``2026-11-20T03:14:00.123Z`` → ``2026-11-20 03:14:00Z`` (UTC, to the second)."""
    if not ts:
        return "—"
    t = str(ts).replace("T", " ")
    if "." in t:
        head, _, rest = t.partition(".")
        tz = rest.lstrip("0123456789")
        t = head + (tz or "")
    return t.replace("+00:00", "Z")


def when(ts: str) -> str:
    """:func:`when_text`, HTML-escaped."""
    return esc(when_text(ts))


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "",
          row_classes: Iterable[str] | None = None) -> str:
    """A table whose cells are already-escaped HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    rc = list(row_classes) if row_classes is not None else None
    for i, row in enumerate(rows):
        c = f' class="{esc(rc[i])}"' if rc and rc[i] else ""
        body.append(f"<tr{c}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    c = f' class="{esc(cls)}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def pager(page_paths: list[str], current: int, from_page: str) -> str:
    if len(page_paths) <= 1:
        return ""
    parts = []
    for i, p in enumerate(page_paths, 1):
        parts.append(f"<span>page {i}</span>" if i == current else link(from_page, p, f"page {i}"))
    return f'<nav class="pager">{" ".join(parts)}</nav>'


def page(title: str, body: str, *, path: str, crumbs: list[tuple[str, str]] = ()) -> str:
    """A whole HTML page. ``path`` is where it is written (relative to reports/)."""
    nav = link(path, "index.html", "All incidents")
    for text, target in crumbs:
        nav += " › " + link(path, target, text)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<header class="top">{nav}</header><main>{body}'
        f'<p class="muted small">Built by opslib {esc(__version__)} review from the evidence '
        "under reports/. Static files: no server, no script.</p></main></body></html>\n")


__all__ = ["esc", "url", "rel", "link", "sev_badge", "status_badge", "action_status", "when",
           "when_text",
           "table", "pager", "page", "CSP"]
