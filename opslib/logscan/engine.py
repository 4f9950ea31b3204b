"""The streaming analysis: chunks of bytes in, one `LogReport` out.

Pipeline per chunk (each chunk goes to one of two worker threads; the compiled kernels drop
the GIL so both cores work):

1. strip ANSI colours if the chunk has any; split lines;
2. parse the layout (`_kernel.parse_text` / `parse_ndjson`); lines the kernel cannot place
   are retried in Python (`Worker._slow`) and otherwise stay *unparsed* (counted, kept as
   examples);
3. `_kernel.keywords` (seed categories, signal-candidate families, HTTP status) and
   `_kernel.templates` (template slot per message);
4. `_kernel.aggregate` folds the chunk into the worker's totals (per minute, instance,
   region, status, template); the Python signal matchers read only the candidate lines.

Memory is bounded by the chunk size times the chunks in flight, whatever the input size:
per-line arrays and read buffers are reused from chunk to chunk.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from . import _kernel as K
from . import signals as S
from ..times import parse_time
from .chunks import TEXT_CAP, ChunkResult, SigAcc, decode_message, record_hits, template_text
from .inputs import entries_as_ndjson, entry_fields, iter_chunks, json_entries, sniff

CHUNK_BYTES = 4 << 20  # two workers' blocks and per-line arrays stay within the shared L3 cache (4 MiB: measured faster than 8 on every mix, and 15-25 % less memory on short lines)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TEXT_SLOW = re.compile(
    r"^(?:error\.message=\"((?:[^\"\\]|\\.)*)\"\s+)?"
    r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:[Zz]|[+-]\d\d:?\d\d)?)\s+"
    r"(?:(\w+)\[([^\]\s]+)\]|([0-9a-f]{6,}))\s+([a-z]{2,8}\d?)\s+\[(\w+)\]\s?(.*)$",
    re.S,
)
_DASH = re.compile(r"^(\d{1,2}):(\d\d):(\d\d)(?:\.\d+)?\s+(.*)$", re.S)
_PROVIDERS = {"app": K.P_APP, "runner": K.P_RUNNER, "proxy": K.P_PROXY, "health": K.P_HEALTH}
_LEVELS = {"info": K.L_INFO, "error": K.L_ERROR, "err": K.L_ERROR, "warn": K.L_WARN, "warning": K.L_WARN,
           "debug": K.L_DEBUG, "fatal": K.L_ERROR}
_KW = K.build_keyword_table(S.kernel_keywords())
_PER_LINE = [f for f in K.Lines._fields if f not in ("ks", "ke", "tnew", "tline")]  # one row per line
_JSON_KEYS = tuple(np.frombuffer(k, dtype=np.uint8).copy()
                   for k in (b"timestamp", b"message", b"instance", b"region", b"provider", b"level"))


class Worker:
    """Per-thread state: intern tables, template table, names for their ids."""

    def __init__(self, mode: str, since_ms: int | None, until_ms: int | None, examples: int,
                 anchor_day_ms: int) -> None:
        self.mode = mode
        self.since = since_ms
        self.until = until_ms
        self.examples = examples
        self.anchor = anchor_day_ms
        self.inames, self.rnames = K.new_names(), K.new_names()
        self.inst_names: dict[int, str] = {-1: ""}
        self.reg_names: dict[int, str] = {-1: ""}
        self.py_ids: dict[int, dict[str, int]] = {}
        self.tt = K.TemplateTable(np.zeros(K.TMPL_CAP, np.uint64), np.zeros(1, np.int64), np.zeros(1, np.int64),
                                  np.zeros(K.TMPL_CAP, np.int64))
        rows = 2 * K.INTERN_CAP + 1  # kernel-interned ids, then ids the Python slow path hands out
        self.acc = K.Totals(np.zeros((rows, 5), np.int64), np.zeros((rows, 5), np.int64),
                            np.zeros(600, np.int64), np.zeros(3, np.int64))
        self.cap = 0
        self._grow(1 << 16)
        self.texample: dict[int, tuple[tuple[int, int], str, str]] = {}
        self.unshown: set[int] = set()  # template slots seen so far only outside the time window
        self.match_cache: dict[tuple[int, int], list[S.Hit]] = {}

    # ids for names found by the Python slow path live above the kernel's table
    def _py_id(self, name: str, names: dict[int, str]) -> int:
        if not name:
            return -1
        ids = self.py_ids.setdefault(id(names), {})
        i = ids.get(name)
        if i is None:
            if len(ids) >= K.INTERN_CAP - 1:
                return -1  # past the table: counted without a name
            i = K.INTERN_CAP + len(ids)
            ids[name] = i
            names[i] = name
        return i

    def _collect_names(self, buf: np.ndarray) -> None:
        for table, names in ((self.inames, self.inst_names), (self.rnames, self.reg_names)):
            pos_s, pos_e = table.pos_s, table.pos_e
            new = np.flatnonzero(pos_s >= 0)
            for slot in new.tolist():
                names[slot] = bytes(buf[pos_s[slot] : pos_e[slot]]).decode("utf-8", "replace")
            pos_s[new] = -1
            pos_e[new] = -1

    def _grow(self, lines: int) -> None:
        # per-line arrays live as long as the worker: fresh arrays per chunk would cost a
        # page fault per 4 KiB written, more than some kernels take
        cap = max(lines, int(self.cap * 1.5), 1 << 16)
        self.lines = K.new_lines(cap)
        self.cap = cap

    def process(self, index: int, data: bytes | memoryview) -> ChunkResult:
        """Analyse one block of whole lines."""
        res = ChunkResult(index)
        buf = np.frombuffer(data, np.uint8)
        if not buf.flags.writeable:
            # one compiled signature: blocks read from files are writable; the few built as
            # bytes (fly-json, logs-API entries) are copied rather than compiling (or loading)
            # the kernels a second time for read-only arrays
            buf = buf.copy()
        mode = {"fly-text": K.MODE_TEXT, "ndjson": K.MODE_NDJSON}.get(self.mode, K.MODE_BARE)
        check_esc = True
        while True:
            n, esc = K.stage_a(buf, mode, check_esc, self.lines, self.inames, self.rnames, _JSON_KEYS)
            if n < 0:
                self._grow(int(np.count_nonzero(buf == 10)) + 1)
            elif esc and check_esc:
                buf = K.strip_ansi(buf)  # coloured output: drop the escape sequences, then parse
                check_esc = False  # a stray ESC that is no colour code stays as it is
            else:
                break
        res.lines = n
        if n == 0:
            return res
        L = self.lines
        # this chunk's rows of every per-line array (the kernels' Lines, cut to n)
        rows = L._replace(**{f: getattr(L, f)[:n] for f in _PER_LINE})
        self._collect_names(buf)
        slow = np.flatnonzero(rows.fl & K.F_SLOW)
        if slow.size:
            self._slow(buf, slow, rows, res)
        # lines no parser placed (the kernel's own verdict or Python's): a few as evidence
        for i in np.flatnonzero((rows.fl & K.F_PARSED) == 0)[:max(self.examples, 5)].tolist():
            res.unparsed_examples.append(((index, i), self._text(buf, rows, i, 4 * TEXT_CAP)[:TEXT_CAP]))
        slot, tnew, tline = rows.slot, L.tnew, L.tline
        since = self.since if self.since is not None else -(1 << 62)
        until = self.until if self.until is not None else (1 << 62)
        nnew, agg = K.stage_b(buf, n, L, K._LOWER, K._COMB, _KW, self.tt, since, until, self.acc, self.examples)
        # a template's text and example come from its first line inside the time window
        # (its slot may have been made by a line outside it, and counts only lines inside)
        inw = rows.inw
        for j in range(nnew):
            if inw[tline[j]]:
                self._show(int(tnew[j]), index, int(tline[j]), buf)
            else:
                self.unshown.add(int(tnew[j]))
        if self.unshown:
            for i in np.flatnonzero(inw & np.isin(slot, list(self.unshown))).tolist():
                if int(slot[i]) in self.unshown:
                    self.unshown.discard(int(slot[i]))
                    self._show(int(slot[i]), index, i, buf)
        self._aggregate(res, buf, rows, agg, since, until)
        return res

    # --- helpers ----------------------------------------------------------------------------
    def _show(self, slot: int, index: int, i: int, buf: np.ndarray) -> None:
        self.texample[slot] = ((index, i), template_text(self._message(buf, self.lines.ms[i], self.lines.me[i])),
                               self._text(buf, self.lines, i))

    @staticmethod
    def _text(buf: np.ndarray, rows: K.Lines, i: int, cap: int = TEXT_CAP) -> str:
        """Line i's text, at most its first ``cap`` bytes (evidence stays bounded)."""
        s = int(rows.ls[i])
        return bytes(buf[s:min(int(rows.le[i]), s + cap)]).decode("utf-8", "replace")

    def _message(self, buf: np.ndarray, s: int, e: int) -> str:
        return decode_message(bytes(buf[s:e]), self.mode == "ndjson")

    def _slow(self, buf: np.ndarray, slow: np.ndarray, rows: K.Lines, res: ChunkResult) -> None:
        """Python parsers for lines the kernel could not place (fills their rows)."""
        ls, le, ts, prov, inst, reg, lvl, ms, me, fl = (rows.ls, rows.le, rows.ts, rows.prov, rows.inst, rows.reg,
                                                         rows.lvl, rows.ms, rows.me, rows.fl)
        last_dash = None
        day = self.anchor
        for i in slow.tolist():
            s, e = int(ls[i]), int(le[i])
            raw = bytes(buf[s:e])
            line = raw.decode("utf-8", "surrogateescape")
            if self.mode == "fly-text":
                m = _TEXT_SLOW.match(line)
                if m:
                    t = _ms(m.group(2))
                    if t is not None:
                        ts[i] = t
                        prov[i] = _PROVIDERS.get((m.group(3) or "").lower(), K.P_OTHER if m.group(3) else K.P_NONE)
                        inst[i] = self._py_id(m.group(4) or m.group(5) or "", self.inst_names)
                        reg[i] = self._py_id(m.group(6), self.reg_names)
                        lvl[i] = _LEVELS.get(m.group(7).lower(), K.L_OTHER)
                        if m.group(1) is not None:
                            ms[i] = s + len(line[: m.start(1)].encode("utf-8", "surrogateescape"))
                            me[i] = s + len(line[: m.end(1)].encode("utf-8", "surrogateescape"))
                        else:
                            ms[i] = s + len(line[: m.start(8)].encode("utf-8", "surrogateescape"))
                        fl[i] = K.F_PARSED | K.F_TS
                        continue
                m = _DASH.match(line)
                if m:
                    sod = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
                    if sod < 86400:
                        if last_dash is not None and sod + 43200 < last_dash:
                            day += 86_400_000  # the copy crossed midnight
                        last_dash = sod
                        ts[i] = day + sod * 1000
                        ms[i] = s + len(line[: m.start(4)].encode("utf-8", "surrogateescape"))
                        fl[i] = K.F_PARSED | K.F_TS
                        res.dated_by_anchor = True
                        continue
            if line.lstrip().startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                f = entry_fields(obj)
                if f is not None:
                    t = _ms(f["timestamp"])
                    ts[i] = -1 if t is None else t
                    prov[i] = _PROVIDERS.get(str(f["provider"]).lower(), K.P_OTHER if f["provider"] else K.P_NONE)
                    inst[i] = self._py_id(str(f["instance"]), self.inst_names)
                    reg[i] = self._py_id(str(f["region"]), self.reg_names)
                    lvl[i] = _LEVELS.get(str(f["level"]).lower(), K.L_NONE)
                    fl[i] = K.F_PARSED | (K.F_TS if t is not None else 0)
                    continue
            # unparsed: the whole line is the message (a few are kept as evidence in process)

    def _aggregate(self, res: ChunkResult, buf: np.ndarray, rows: K.Lines, agg: tuple, since: int,
                   until: int) -> None:
        ts, inst, reg, ms, me, cand, slot = rows.ts, rows.inst, rows.reg, rows.ms, rows.me, rows.cand, rows.slot
        (parsed, filtered, tmin, tmax, m0, span, mc, im_l, im_e, n5, first5, last5, ex5, cidx) = agg
        res.parsed = int(parsed)
        res.filtered_out = int(filtered)
        if tmax >= tmin:
            res.ts_min, res.ts_max = int(tmin), int(tmax)
            if span > 0:
                nz = np.flatnonzero(mc[:, 0])
                res.minute_keys = (nz + m0).astype(np.int64)
                res.minute_counts = mc[nz]
                for b, col in zip(*np.nonzero(im_l), strict=True):
                    res.inst_minute.append((int(m0 + b), self.inst_names.get(int(col) - 1, "?"),
                                            np.array([im_l[b, col], im_e[b, col]])))
            else:  # minutes too spread out for a dense table (garbage timestamps): sort instead
                self._sparse_minutes(res, rows, since, until)
            if not im_l.shape[0]:  # minutes x machines too many for a dense table
                self._sparse_instance_minutes(res, rows, since, until)
        if n5:
            acc = res.signals.setdefault("http_5xx", SigAcc())
            acc.count = int(n5)
            t_first = float(ts[first5]) / 1000.0 if ts[first5] >= 0 else None
            t_last = float(ts[last5]) / 1000.0 if ts[last5] >= 0 else None
            acc.first = ((res.index, int(first5)), t_first)
            acc.last = ((res.index, int(last5)), t_last)
            acc.examples = [((res.index, int(i)), self._text(buf, rows, i, 4 * TEXT_CAP)[:TEXT_CAP])
                            for i in ex5 if i >= 0]
        # signals from candidate lines. Outcomes that depend only on the template (every
        # family except memory, exits, health checks and Postgres, whose digits matter; and
        # no line whose masked tokens could hide a phrase) are cached per template slot, and
        # a line's text is decoded only when it becomes evidence.
        cache, fl = self.match_cache, rows.fl
        for i in cidx.tolist():
            fam = int(cand[i])
            key = (int(slot[i]), fam)
            shared = key[0] >= 0 and not fam & S.DIGIT_SENSITIVE and not fl[i] & K.F_HIDES
            hits = cache.get(key) if shared else None
            if hits is None:
                hits = S.match(self._message(buf, ms[i], me[i]), fam)
                if shared and len(cache) < 100_000:
                    cache[key] = hits
            if hits:
                record_hits(res, hits, i, float(ts[i]) / 1000.0 if ts[i] >= 0 else None,
                            self.inst_names.get(int(inst[i]), ""), self.reg_names.get(int(reg[i]), ""),
                            lambda i=i: self._text(buf, rows, i), self.examples)

    @staticmethod
    def _sparse_minutes(res: ChunkResult, rows: K.Lines, since: int, until: int) -> None:
        ts, fl, st = rows.ts, rows.fl, rows.st
        sel = (ts >= 0) & (ts >= since) & (ts < until)
        minute = ts[sel] // 60000
        uk, inv = np.unique(minute, return_inverse=True)
        f = fl[sel]
        measures = (np.ones(inv.size, dtype=bool), (f & K.F_ERR) != 0, (f & K.F_AUTH) != 0, (f & K.F_DB) != 0,
                    st[sel] >= 500)
        res.minute_keys = uk.astype(np.int64)
        res.minute_counts = np.stack([np.bincount(inv[m], minlength=uk.size) for m in measures], axis=1)

    def _sparse_instance_minutes(self, res: ChunkResult, rows: K.Lines, since: int, until: int) -> None:
        ts, inst, fl = rows.ts, rows.inst, rows.fl
        sel = (ts >= 0) & (ts >= since) & (ts < until)
        pairs, inv = np.unique(np.stack([ts[sel] // 60000, inst[sel]], axis=1), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        lines = np.bincount(inv, minlength=len(pairs))
        errors = np.bincount(inv, weights=(fl[sel] & K.F_ERR) != 0, minlength=len(pairs)).astype(np.int64)
        for (minute, iid), n, e in zip(pairs.tolist(), lines.tolist(), errors.tolist(), strict=True):
            res.inst_minute.append((minute, self.inst_names.get(iid, "?"), np.array([n, e])))

    def categories(self) -> np.ndarray:
        """Lines per seed category so far: errors, auth, database."""
        return self.acc.cat

    def statuses(self) -> np.ndarray:
        """Lines per HTTP status code so far (index = code)."""
        return self.acc.status

    def other_templates(self) -> int:
        """Lines whose template came after the table was full."""
        return int(self.tt.other[0])

    def totals(self, which: str) -> dict[str, np.ndarray]:
        """Running per-instance or per-region totals keyed by name."""
        acc, names = (self.acc.inst, self.inst_names) if which == "instance" else (self.acc.reg, self.reg_names)
        out: dict[str, np.ndarray] = {}
        for row in np.flatnonzero(acc[:, 0]).tolist():
            name = names.get(row - 1, "?")
            out[name] = out[name] + acc[row] if name in out else acc[row].copy()
        return out

    def templates(self) -> dict[int, tuple[int, tuple[int, int], str, str]]:
        """Template hash -> (count, first order, template, example line)."""
        out = {}
        count, keys = self.tt.count, self.tt.keys
        for slot in np.flatnonzero(count).tolist():
            order, tmpl, example = self.texample[slot]
            out[int(keys[slot])] = (int(count[slot]), order, tmpl, example)
        return out


def _ms(value: Any) -> int | None:
    """Epoch milliseconds of a timestamp as the platforms print it (see opslib.times)."""
    dt = parse_time(value)
    return int(dt.timestamp() * 1000) if dt is not None else None


# --- the driver ------------------------------------------------------------------------------
_kernels_lock = threading.Lock()
_kernels_ready = False


def load_kernels() -> None:
    """Load the compiled kernels now (numba's first call sets up its compiler and reads the
    on-disk cache, ~0.3 s), so that nothing is imported once the analysis threads run."""
    global _kernels_ready
    with _kernels_lock:
        if not _kernels_ready:
            # a writable buffer, as files are read into: same compiled signature
            Worker("fly-text", None, None, 0, 0).process(0, bytearray(b"x\n"))
            _kernels_ready = True


def run(stream: Any, entries: Any, fmt: str, since_ms: int | None, until_ms: int | None,
        examples: int, anchor_day_ms: int, workers: int | None = None,
        chunk_bytes: int | None = None, problems: list[str] | None = None, head: bytes | None = None,
        ) -> tuple[list[ChunkResult], list[Worker], str]:
    """Process the whole input; returns chunk results (in order), the workers and the format.
    ``head``: the stream's first bytes when the caller has read them already."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    if entries is None:
        if head is None:
            head = stream.read(65536)
        if fmt == "auto":
            fmt = sniff(head)
    else:
        fmt = "api" if fmt == "auto" else fmt
    mode = {"fly-text": "fly-text", "ndjson": "ndjson", "bare": "bare"}.get(fmt, "ndjson")
    if mode == "ndjson" and entries is None and fmt in ("fly-json", "api"):
        entries = json_entries(stream, head)
    load_kernels()
    nworkers = workers or max(1, min(2, os.cpu_count() or 1))
    pool = [Worker(mode, since_ms, until_ms, examples, anchor_day_ms) for _ in range(nworkers)]
    idle: queue.SimpleQueue[Worker] = queue.SimpleQueue()
    for w in pool:
        idle.put(w)
    executor = ThreadPoolExecutor(max_workers=nworkers, thread_name_prefix="logs")
    futures: list[Future[ChunkResult]] = []
    results: list[ChunkResult] = []

    spare: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    in_use: list[Any] = []

    def take_spare() -> bytearray | None:
        try:
            return spare.get_nowait()
        except queue.Empty:
            return None

    def collect() -> None:
        k = len(results)
        results.append(futures[k].result())
        buf = in_use[k]
        in_use[k] = None
        if isinstance(buf, bytearray):
            spare.put(buf)  # the worker is done with it: the reader may fill it again

    def process(idx: int, data: bytes | memoryview) -> ChunkResult:
        # whichever thread is free takes the next block (the cores of a shared machine do not
        # run at the same speed). Tasks start in block order, so each Worker still sees its
        # blocks in stream order, and merging by (block, line) keeps the result the same.
        w = idle.get()
        try:
            return w.process(idx, data)
        finally:
            idle.put(w)

    def blocks() -> Iterator[bytes | memoryview]:
        if entries is not None:
            yield from entries_as_ndjson(entries, chunk_bytes)
        else:
            yield from iter_chunks(stream, chunk_bytes, head, take_spare, problems)

    # the kernels drop the GIL, but every call and return needs it back; a short switch
    # interval keeps one worker's Python step from stalling the other's kernel hand-off
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        for idx, data in enumerate(blocks()):
            in_use.append(data.obj if isinstance(data, memoryview) else None)
            futures.append(executor.submit(process, idx, data))
            del data  # no reference may outlive the block once it goes back to the spares
            # bounded look-ahead keeps memory flat: one block queued per worker
            while len(futures) - len(results) > nworkers:
                collect()
        while len(results) < len(futures):
            collect()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        sys.setswitchinterval(old_interval)
    return results, pool, fmt
