"""Where log bytes come from, and which layout they are in.

`open_source` turns a path (``.gz`` by magic bytes), ``"-"`` (stdin), a binary file object or
an iterable of already-fetched entries into a byte stream; `sniff` names its format;
`json_entries` walks concatenated JSON documents (``fly logs --json`` objects, logs-API pages)
without loading the whole input; `entry_fields` normalises one entry of any known shape.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FORMATS = ("auto", "fly-text", "fly-json", "ndjson", "bare", "api")

_FLY_TEXT = re.compile(
    rb"^(?:\x1b\[[0-9;]*m)*(?:error\.message=\"(?:[^\"\\]|\\.)*\"\s+)?"
    rb"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d\S*\s"
)
_DASHBOARD = re.compile(rb"^\d{1,2}:\d\d:\d\d(?:\.\d+)?\s")
# what makes a timestamped line `fly logs` text rather than an app's own timestamped line: the
# source column, provider[instance] (or a bare 8/14-hex id in older flyctl), then the region
# and the bracketed level
_FLY_SOURCE = re.compile(
    rb"\S*\s+(?:[A-Za-z][\w-]* ?\[[^\]\s]+\]|[0-9a-f]{8}|[0-9a-f]{14})\s+"
    rb"(?:\x1b\[[0-9;]*m)*[a-z0-9]{2,5}(?:\x1b\[[0-9;]*m)*\s+\[")


@dataclass
class Source:
    """An opened input: a binary stream, or entries already parsed (dicts)."""

    stream: IO[bytes] | None
    entries: Iterable[Any] | None
    name: str
    owned: bool
    problems: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.owned and self.stream is not None:
            self.stream.close()


def open_source(source: Any) -> Source:
    """Open ``source`` for reading.

    Raises:
        OSError: the path cannot be read (message says which path and what to check).
        ValueError: ``source`` is of a type that cannot hold logs.
    """
    if isinstance(source, (str, Path)):
        if str(source) == "-":
            if sys.stdin is None or sys.stdin.closed:
                raise OSError(9, "stdin is closed: pipe the logs in (fly logs -a APP | …) or "
                                 "give a file")
            return _maybe_gzip(Source(sys.stdin.buffer, None, "<stdin>", False))
        path = Path(source)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by Source.close
        except FileNotFoundError as exc:
            raise OSError(exc.errno, f"log file not found: {path} (check the path, or use '-' to read stdin)") from exc
        except IsADirectoryError as exc:
            raise OSError(exc.errno, f"{path} is a directory; pass a log file (fly logs … > file) or '-'") from exc
        except PermissionError as exc:
            raise OSError(exc.errno, f"cannot read {path}: permission denied") from exc
        return _maybe_gzip(Source(fh, None, str(path), True))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _maybe_gzip(Source(io.BytesIO(bytes(source)), None, "<bytes>", True))
    if hasattr(source, "read"):
        probe = source.read(0)
        if isinstance(probe, str):
            raise ValueError("the file object is in text mode; open it with 'rb' (binary) so bytes are counted exactly")
        return _maybe_gzip(Source(source, None, getattr(source, "name", "<stream>"), False))
    if isinstance(source, dict):
        return Source(None, [source], "<entries>", False)
    if isinstance(source, Iterable):
        return Source(None, source, "<entries>", False)
    raise ValueError(f"cannot read logs from {type(source).__name__}: pass a path, '-', a binary file or log entries")


class _Peek(io.RawIOBase):
    """A stream with a few bytes pushed back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._rest, "readinto", None)
        if readinto is not None:  # straight into the caller's buffer: no copy through a bytes
            return readinto(b) or 0
        data = self._rest.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        self._rest.close()
        super().close()


def _maybe_gzip(src: Source) -> Source:
    assert src.stream is not None
    head = src.stream.read(1 << 16)
    stream = io.BufferedReader(_Peek(head, src.stream), buffer_size=1 << 20)  # type: ignore[arg-type]
    out = Source(stream, None, src.name, True)
    if head[:2] != b"\x1f\x8b" and src.name.endswith(".gz"):
        raise OSError(22, f"{src.name} ends in .gz but is not gzip: decompress it or rename it")
    if head[:2] == b"\x1f\x8b":
        try:
            zlib.decompressobj(31).decompress(head)
        except zlib.error as exc:
            if src.name.endswith(".gz"):  # a file meant as gzip: analysing bytes would mislead
                raise OSError(22, f"{src.name} is a damaged gzip file ({exc}): nothing was "
                                  "analysed; fetch it again") from None
            return out  # gzip's magic bytes in a stream, but no gzip: read the bytes as they are
        out.stream = _SafeGzip(gzip.GzipFile(fileobj=stream, mode="rb"), out.problems)  # type: ignore[assignment]
    return out


class _SafeGzip(io.RawIOBase):
    """A gzip stream that ends (with a note) instead of raising when the input is cut short."""

    def __init__(self, gz: gzip.GzipFile, problems: list[str]) -> None:
        self._gz = gz
        self._problems = problems

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        # read1 hands back what one step decompressed, so data before a cut is not lost
        try:
            data = self._gz.read1(len(b))
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self._problems.append(f"compressed input is truncated or corrupt ({exc}); analysed what could be read")
            return 0
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        self._gz.close()
        super().close()


def sniff(head: bytes) -> str:
    """Guess the format from the first bytes of the input."""
    text = head.lstrip()
    if not text:
        return "fly-text"
    if text[:1] in (b"{", b"["):
        first = text.split(b"\n", 1)[0].strip()
        try:
            obj = json.loads(first)
        except ValueError:
            return "fly-json"
        if isinstance(obj, dict) and "data" in obj:
            return "api"
        return "ndjson" if isinstance(obj, dict) else "fly-json"
    lines = [ln for ln in head.split(b"\n")[:200] if ln.strip()]
    if len(head) > 65536 and lines:
        lines = lines[:-1]  # may be cut in the middle
    fly = sum(1 for ln in lines if _DASHBOARD.match(ln) or _is_fly_line(ln))
    return "fly-text" if lines and fly * 2 >= len(lines) else "bare"


def _is_fly_line(line: bytes) -> bool:
    m = _FLY_TEXT.match(line)
    return bool(m) and bool(_FLY_SOURCE.match(line, m.end() - 1))


def iter_chunks(stream: IO[bytes], size: int, head: bytes = b"",
                spare: Callable[[], bytearray | None] | None = None,
                problems: list[str] | None = None) -> Iterator[memoryview]:
    """Blocks of whole lines (the last one may lack its newline), each in its own buffer.

    Every block is read straight into a ``bytearray`` (no concatenation copies) and handed
    out as a memoryview, so a worker can keep it while the next one is read. ``spare``
    returns a buffer the caller is done with (or None), so memory is reused, not refaulted.
    """
    carry = head
    eof = False
    while not eof:
        need = len(carry) + size
        ba = spare() if spare is not None else None
        if ba is None or len(ba) < need:
            ba = bytearray(need)
        ba[: len(carry)] = carry
        filled = len(carry)
        view = memoryview(ba)
        while filled < need:
            n = stream.readinto(view[filled:need])  # type: ignore[attr-defined]
            if not n:
                eof = True
                break
            filled += n
        if filled == 0:
            break
        cut = ba.rfind(b"\n", 0, filled)
        if cut < 0 and not eof:
            if filled < 4 * size:
                carry = bytes(ba[:filled])  # one line longer than a block: keep reading
                continue
            # a "line" of 4 blocks without a newline is not a log line: cut it, so memory
            # stays bounded whatever the input, and say so
            if problems is not None:
                problems.append(f"lines longer than {4 * size >> 20} MiB were cut into pieces (counted as lines)")
            cut = filled - 1
        end = filled if (eof or cut < 0) else cut + 1
        carry = bytes(ba[end:filled])
        yield view[:end]
        if eof and carry:
            yield memoryview(bytearray(carry))
            carry = b""


# --- JSON documents ----------------------------------------------------------------------------
def entry_fields(obj: Any) -> dict[str, Any] | None:
    """Normalise one log entry (flyctl JSON, logs-API item or attributes, shipper record)."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("attributes"), dict):
        obj = obj["attributes"]
    msg = obj.get("message", obj.get("msg"))
    if msg is None:
        return None
    fly = obj.get("fly") if isinstance(obj.get("fly"), dict) else {}
    app = fly.get("app") if isinstance(fly.get("app"), dict) else {}
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    event = obj.get("event") or meta.get("event") or meta.get("Event") or {}
    log = obj.get("log") if isinstance(obj.get("log"), dict) else {}
    level = obj.get("level") if isinstance(obj.get("level"), str) else log.get("level")
    return {
        "timestamp": obj.get("timestamp", obj.get("@timestamp")),
        "message": msg if isinstance(msg, str) else json.dumps(msg),
        "level": level or "",
        "instance": obj.get("instance") or app.get("instance") or meta.get("Instance") or "",
        "region": obj.get("region") or fly.get("region") or meta.get("Region") or "",
        "provider": (event.get("provider") or event.get("Provider") or "") if isinstance(event, dict) else "",
    }


def to_ndjson_line(fields: dict[str, Any]) -> bytes:
    """Render normalised fields as one compact NDJSON record (the kernel's input shape).

    None of the key names contains a category keyword, so categories count the same words
    the ``fly logs`` text line of the entry would show.
    """
    rec = {
        "event": {"provider": fields.get("provider") or ""},
        "instance": fields.get("instance") or "",
        "region": fields.get("region") or "",
        "level": fields.get("level") or "",
        "message": fields.get("message") or "",
        "timestamp": fields.get("timestamp") if fields.get("timestamp") is not None else "",
    }
    # default=str: a timestamp handed over as a datetime is written as its ISO text
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8", "surrogatepass") + b"\n"


_WS = re.compile(r"[\s,]*")


def json_entries(stream: IO[bytes], head: bytes = b"", size: int = 1 << 22) -> Iterator[tuple[dict | None, str]]:
    """Entries from concatenated JSON documents; ``(None, raw)`` for text that is not JSON.

    Handles ``fly logs --json`` (pretty objects back to back), logs-API pages
    (``{"data": [...]}``), arrays of entries, and NDJSON, in bounded memory: text is decoded
    a block at a time and consumed by position (no re-slicing per object).
    """
    dec = json.JSONDecoder()
    buf = ""
    pos = 0
    pending = head  # bytes not yet decoded (a block may end inside a UTF-8 sequence)
    eof = False

    def refill() -> bool:
        nonlocal buf, pos, pending, eof
        if eof:
            return False
        block = stream.read(size)
        if not block:
            eof = True
            if pending:
                buf, pos = buf[pos:] + pending.decode("utf-8", "replace"), 0
                pending = b""
                return True
            return False
        data = pending + block
        try:
            text, pending = data.decode("utf-8"), b""
        except UnicodeDecodeError as exc:
            if exc.start >= len(data) - 3:
                text, pending = data[: exc.start].decode("utf-8", "replace"), data[exc.start :]
            else:
                text, pending = data.decode("utf-8", "replace"), b""
        buf, pos = buf[pos:] + text, 0
        return True

    refill()
    while True:
        pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
        if pos >= len(buf):
            if not refill():
                return
            continue
        try:
            obj, end = dec.raw_decode(buf, pos)
        except ValueError:
            # maybe an object cut by the block boundary: read more before giving up on it
            if len(buf) - pos < size * 4 and refill():
                continue
            # not JSON: hand back one line as unparsed and resynchronise after it
            nl = buf.find("\n", pos)
            if nl < 0:
                raw, pos = buf[pos:], len(buf)
            else:
                raw, pos = buf[pos:nl], nl + 1
            yield None, raw
            continue
        pos = end
        yield from _expand(obj)


def _expand(obj: Any) -> Iterator[tuple[dict | None, str]]:
    if isinstance(obj, list):
        for item in obj:
            yield from _expand(item)
        return
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        for item in obj["data"]:
            f = entry_fields(item)
            yield (f, "") if f is not None else (None, json.dumps(item)[:500])
        return
    f = entry_fields(obj)
    if f is None:
        yield None, json.dumps(obj)[:500]
    else:
        yield f, ""


def entry_record(item: Any) -> tuple[dict[str, Any] | None, bytes]:
    """One entry (or a ``(fields, raw)`` pair from `json_entries`) as the engine reads it: its
    normalised fields and its NDJSON line (with the newline). An item that is no entry has
    no fields and becomes an unparsed line holding what it was, so the line count stays honest."""
    if isinstance(item, tuple):
        fields, raw = item
    else:
        fields = entry_fields(item)
        raw = repr(item)[:500] if fields is None else ""
    if fields is None:
        return None, raw.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace") + b"\n"
    return fields, to_ndjson_line(fields)


def entries_as_ndjson(items: Iterable[Any], chunk_bytes: int) -> Iterator[bytes]:
    """Batches of NDJSON bytes from entries (`entry_record`)."""
    out: list[bytes] = []
    size = 0
    for item in items:
        line = entry_record(item)[1]
        out.append(line)
        size += len(line)
        if size >= chunk_bytes:
            yield b"".join(out)
            out, size = [], 0
    if out:
        yield b"".join(out)
