"""A tiny document model rendered to both Markdown and HTML (the postmortem draft).

Generating both from one structure keeps them identical without a Markdown renderer, and
keeps escaping in one place: evidence text is backslash-escaped for Markdown (so it can never
become a link, emphasis or raw HTML) and HTML-escaped for HTML.

A *line* is a list of segments: a plain ``str``, or a tuple ``("link", text, href)``,
``("code", text)``, ``("b", text)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union

from .html import esc, url

Segment = Union[str, tuple]
Line = list[Segment]

# Enough to stop emphasis, code, links, images, tables, strike-through, entities and raw
# HTML; lines always start with our own prefix, so list and heading markers need no escape.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|<>~&])")


def md_text(text: str) -> str:
    """Escape every Markdown-active character; newlines become spaces."""
    return _MD_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", str(text)))


def md_code(text: str) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    ticks = max((len(m) for m in re.findall(r"`+", text)), default=0) + 1
    fence = "`" * ticks
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


# How each segment of a Line is written: plain text, then ("link", text, href), ("code", text),
# ("b", text); every piece of text escaped for its format.
_MD = {"text": md_text, "link": lambda t, h: f"[{md_text(t)}](<{url(h)}>)", "code": md_code,
       "b": lambda t: f"**{md_text(t)}**"}
_HTML = {"text": esc, "link": lambda t, h: f'<a href="{esc(url(h))}">{esc(t)}</a>',
         "code": lambda t: f"<code>{esc(t)}</code>", "b": lambda t: f"<b>{esc(t)}</b>"}


def _render(line: Line, fmt: dict[str, Any]) -> str:
    return "".join(fmt["text"](seg) if isinstance(seg, str) else fmt[seg[0]](*seg[1:])
                   for seg in line)


def _md_line(line: Line) -> str:
    return _render(line, _MD)


def _html_line(line: Line) -> str:
    return _render(line, _HTML)


@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, *segments: Segment) -> None:
        self.blocks.append(("p", list(segments)))

    def ul(self, items: list[Line]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, headers: list[str], rows: list[list[Line]]) -> None:
        if rows:
            self.blocks.append(("table", headers, rows))

    def markdown(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"{'#' * b[1]} {md_text(b[2])}")
            elif b[0] == "p":
                out.append(_md_line(b[1]))
            elif b[0] == "ul":
                out.append("\n".join(_md_bullet(item) for item in b[1]))
            elif b[0] == "table":
                out.append("| " + " | ".join(md_text(h) for h in b[1]) + " |")
                out[-1] += "\n|" + "---|" * len(b[1])
                for row in b[2]:
                    out[-1] += "\n| " + " | ".join(_md_line(c) for c in row) + " |"
        return "\n\n".join(out) + "\n"

    def html(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{esc(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{_html_line(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(_html_bullet(i) for i in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{esc(h)}</th>" for h in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{_html_line(c)}</td>" for c in row)
                               + "</tr>" for row in b[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        return "\n".join(out)


def _md_bullet(item: Line) -> str:
    # A nested bullet is a Line whose first segment is ("sub", [lines]).
    subs = [s for s in item if isinstance(s, tuple) and s[0] == "sub"]
    main = [s for s in item if not (isinstance(s, tuple) and s[0] == "sub")]
    text = "- " + _md_line(main)
    for sub in subs:
        for line in sub[1]:
            text += "\n  - " + _md_line(line)
    return text


def _html_bullet(item: Line) -> str:
    subs = [s for s in item if isinstance(s, tuple) and s[0] == "sub"]
    main = [s for s in item if not (isinstance(s, tuple) and s[0] == "sub")]
    inner = "".join("<ul>" + "".join(f"<li>{_html_line(line)}</li>" for line in sub[1]) + "</ul>"
                    for sub in subs)
    return f"<li>{_html_line(main)}{inner}</li>"


__all__ = ["Doc", "md_text", "md_code"]
