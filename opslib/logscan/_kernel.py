"""Compiled per-byte kernels: line splitting, layout parsing, keyword scan, templates and
aggregation.

Everything here runs under numba's ``nogil`` so two chunks are processed on two cores at
once. The kernels only produce numbers (offsets, epoch milliseconds, interned ids, bit
flags, template slots); turning them into strings, signals and DataFrames is the job of
`engine.py`. Why numba and not Arrow/Polars regex kernels: see ``ENGINE.md``.
"""

from __future__ import annotations

import os
import re
from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# flags, codes and keyword actions (numba-free, so the signal table can use them)
from .layout import (A_STATUS_KEY, A_STATUS_METHOD, A_STATUS_PHRASE, F_AUTH, F_DB, F_ERR, F_HIDES, F_PARSED, F_SLOW, F_TS,  # noqa: F401
                     L_DEBUG, L_ERROR, L_INFO, L_NONE, L_OTHER, L_WARN, P_APP, P_HEALTH, P_NONE, P_OTHER,
                     P_PROXY, P_RUNNER, STATUS_BITS)

# --- raw byte access ---------------------------------------------------------------------
# numba indexes arrays with a check for negative indices (Python's wrap-around) on every
# access, which costs a branch per byte and keeps loops scalar. The kernels compute their
# offsets inside [0, len) themselves, so they read bytes through these instead.
#
# OPSLIB_LOGS_BOUNDSCHECK=1 builds the checked variant instead, for the tests: `at` and
# `load_u64` raise IndexError outside the buffer, every array index is bounds-checked
# (numba's boundscheck), and nothing is read from or written to numba's on-disk cache, so a
# checked build never mixes with the fast one (tests/test_logs_boundscheck.py).
CHECKED = os.environ.get("OPSLIB_LOGS_BOUNDSCHECK") == "1"
KERNEL = {"nogil": True, "cache": not CHECKED, "boundscheck": CHECKED}


def _is_bytes(arr: types.Type) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.ndim == 1 and arr.layout == "C"


@intrinsic
def _at(typingctx, arr, idx):
    """``arr[idx]`` of a contiguous uint8 array, without the wrap-around (``0 <= idx < len``)."""
    if not (_is_bytes(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.int64)
        return builder.load(builder.gep(ary.data, [i], inbounds=True))

    return types.uint8(arr, idx), codegen


@intrinsic
def _load_u64(typingctx, arr, idx):
    """Eight bytes of a contiguous uint8 array from ``idx`` as one little-endian word
    (unaligned; ``0 <= idx <= len - 8``)."""
    if not (_is_bytes(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.int64)
        p = builder.bitcast(builder.gep(ary.data, [i], inbounds=True), ir.IntType(64).as_pointer())
        return builder.load(p, align=1)

    return types.uint64(arr, idx), codegen


if CHECKED:
    @njit
    def at(arr, idx):
        if idx < 0 or idx >= arr.shape[0]:
            raise IndexError("log kernel: byte read outside its buffer")
        return _at(arr, idx)

    @njit
    def load_u64(arr, idx):
        if idx < 0 or idx + 8 > arr.shape[0]:
            raise IndexError("log kernel: word read outside its buffer")
        return _load_u64(arr, idx)
else:
    at, load_u64 = _at, _load_u64


@intrinsic
def ctz(typingctx, x):
    """Trailing zero bits of a non-zero uint64."""
    if x != types.uint64:
        return None

    def codegen(context, builder, sig, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(x), codegen


_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)


@njit(inline="always")
def _find_quote_or_backslash(buf, q, e):
    """First ``"`` or backslash in [q, e), or e. Eight bytes per step: a byte of ``x ^ c``
    is zero where ``x`` holds ``c``, and ``(y - ones) & ~y & high`` marks the lowest zero
    byte of ``y`` exactly."""
    while q + 8 <= e:
        x = load_u64(buf, q)
        y1 = x ^ _QUOTES
        y2 = x ^ _BACKSLASHES
        z = ((y1 - _ONES) & ~y1 | (y2 - _ONES) & ~y2) & _HIGH
        if z != 0:
            return q + np.int64(ctz(z) >> np.uint64(3))
        q += 8
    while q < e:
        c = at(buf, q)
        if c == 34 or c == 92:
            return q
        q += 1
    return e


SPANS = 8  # keyword-scan spans per line (see parse_ndjson)

# What the kernels share, bundled (numba passes a namedtuple of arrays as one argument):
# per-line rows of one chunk (``ks``/``ke`` hold ``SPANS`` scan spans per line) ...
Lines = namedtuple("Lines", "ls le ts prov inst reg lvl ms me st fl cand slot tnew tline inw kn ks ke")
LINE_DTYPES = {"ls": np.int64, "le": np.int64, "ts": np.int64, "prov": np.int8, "inst": np.int32,
               "reg": np.int32, "lvl": np.int8, "ms": np.int64, "me": np.int64, "st": np.int16,
               "fl": np.uint16, "cand": np.int64, "slot": np.int32, "tnew": np.int32, "tline": np.int64,
               "inw": np.bool_, "kn": np.int8, "ks": np.int64, "ke": np.int64}
# ... an intern table (hash keys, entries used, where a new entry's text is) ...
Names = namedtuple("Names", "keys used pos_s pos_e")
# ... the keyword table, the template table and a worker's running totals
KeywordTable = namedtuple("KeywordTable", "has start ent_kw ent_shift kw_bytes kw_off kw_len kw_act")
TemplateTable = namedtuple("TemplateTable", "keys used other count")
Totals = namedtuple("Totals", "inst reg status cat")


def new_lines(cap: int) -> Lines:
    """Per-line arrays for up to ``cap`` lines."""
    return Lines(**{k: np.empty(cap * SPANS if k in ("ks", "ke") else cap, dtype=dt) for k, dt in LINE_DTYPES.items()})


def new_names() -> Names:
    return Names(np.zeros(INTERN_CAP, np.uint64), np.zeros(1, np.int64), np.full(INTERN_CAP, -1, np.int64),
                 np.full(INTERN_CAP, -1, np.int64))
TMPL_CAP = 1 << 16  # template slots per worker; beyond 3/4 full new templates count as "other"
INTERN_CAP = 1 << 12

_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[ord("A") : ord("Z") + 1] += 32
# 1 = token char for templates ([A-Za-z0-9_.-]), 2 = digit, 4 = uppercase letter
_CLS = np.zeros(256, dtype=np.uint8)
for _c in b"abcdefghijklmnopqrstuvwxyz_.-":
    _CLS[_c] = 1
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _CLS[_c] = 1 | 4
for _c in b"0123456789":
    _CLS[_c] = 1 | 2

# one lookup per byte: low 5 bits = (lowercase byte) & 31 for the keyword key, high 3 bits
# = template class (1 token char, 2 digit, 4 uppercase)
_COMB = ((_LOWER & 31) | (_CLS << 5)).astype(np.uint8)

FNV_OFF = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
MASK_MARK = np.uint64(0x9E3779B97F4A7C15)


def _key3(kw: bytes) -> int:
    """Lookup key of a trigram: 5 bits of each of its three bytes (32 Ki keys, in L1)."""
    return ((kw[0] & 31) << 10) | ((kw[1] & 31) << 5) | (kw[2] & 31)


# Share (percent) of each 5-bit symbol (byte & 31) in log text: the larger of its share in
# the real excerpts of tests/logcorpus and in access-heavy generated logs. Letters p-y share
# their symbol with the digits, which is why those are common.
_SYM = (11.1, 4.5, 3.3, 3.4, 2.7, 7.3, 1.5, 1.6, 1.7, 4.7, 1.3, 0.5, 2.9, 3.8, 7.0, 6.2,
        11.2, 5.4, 8.5, 5.3, 7.1, 3.1, 1.7, 1.8, 3.8, 2.9, 3.7, 1.9, 0.2, 2.0, 0.1, 0.3)
# words in nearly every log: a key inside one of them is far commoner than its letters say
_COMMON = (b" http", b"http://", b"https://", b"http/1.1", b" get ", b" post ", b"info", b"debug", b"warn",
           b"error", b"request", b"response", b"status", b"time", b"user", b"/api/", b"the ", b" and ", b"ing ",
           b"tion", b"json", b"application", b"content", b"mozilla", b"000", b" - ", b"connect", b"server",
           b"service")


# every 2- and 3-byte piece of those words, folded to 5 bits a byte as the key sees it
_COMMON_PIECES = frozenset(bytes(c & 31 for c in w[i:i + n]) for w in _COMMON for n in (2, 3)
                           for i in range(len(w) - n + 1))


def _share(t: bytes) -> float:
    """Estimated share of scan positions whose key matches ``t`` (two or three bytes)."""
    v = 1.0
    for c in t:
        v *= _SYM[c & 31] / 100.0
    return v * 30.0 if bytes(c & 31 for c in t) in _COMMON_PIECES else v


def _plan(kw: bytes) -> list[tuple[bytes, int]]:
    """Two (trigram, shift) entries such that every occurrence of ``kw`` shows one of them
    at an even distance from the start of its span: two neighbouring trigrams of the
    keyword, or its first three bytes plus "any byte, then its first two" (shift -1), which
    is the only way for a three-byte keyword. The pair with the rarest keys is taken."""
    plans = [((kw[o:o + 3], o), (kw[o + 1:o + 4], o + 1)) for o in range(len(kw) - 3)]
    plans.append(((kw[:3], 0), (b"?" + kw[:2], -1)))
    best = min(plans, key=lambda pl: sum(_share(t[1:] if t[0] == 63 and sh == -1 else t) for t, sh in pl))
    return list(best)


def build_keyword_table(keywords: list[tuple[bytes, int]]) -> KeywordTable:
    """Compile (lowercase keyword, action) pairs into arrays indexed by a three-byte key.

    The key keeps 5 bits of each of three bytes, so one lookup per byte rules out almost
    every position. The scan looks up every *other* position: each keyword is filed under
    the two trigrams `_plan` picks, one of which every occurrence shows at a looked-up
    position, with the shift from that trigram's start back to the keyword's; candidates
    are then compared byte by byte.
    """
    entries: list[tuple[int, int, int]] = []  # (key, keyword, shift)
    for i, (kw, _a) in enumerate(keywords):
        if len(kw) < 3 or kw != kw.lower():
            raise ValueError(f"keyword must be lowercase and at least 3 bytes: {kw!r}")
        # `parse_text` does not scan a prefix that can hold no keyword but "401" (timestamp,
        # known provider, hex machine id, region of three letters)
        if kw != b"401" and (len(kw) <= 3 or re.fullmatch(rb"[0-9a-f]+|[0-9tz:.,+ -]+", kw)):
            raise ValueError(f"keyword {kw!r} could hide in a timestamp, machine id or region, which are not scanned")
        for tri, shift in _plan(kw):
            if shift == -1:  # any byte first: every value of its 5 bits
                entries += [(_key3(bytes([x | 64]) + tri[1:]), i, -1) for x in range(32)]
            else:
                entries.append((_key3(tri), i, shift))
    size = 1 << 15
    entries.sort()
    keys = np.array([k for k, _, _ in entries], dtype=np.int64)
    start = np.zeros(size + 1, dtype=np.int32)
    start[1:] = np.cumsum(np.bincount(keys, minlength=size))
    has = (start[1:] != start[:-1]).astype(np.uint8)
    ent_kw = np.array([i for _, i, _ in entries], dtype=np.int32)
    ent_shift = np.array([sh for _, _, sh in entries], dtype=np.int32)
    kw_bytes = np.frombuffer(b"".join(k for k, _ in keywords), dtype=np.uint8).copy()
    kw_off = np.zeros(len(keywords), dtype=np.int32)
    kw_len = np.zeros(len(keywords), dtype=np.int32)
    kw_act = np.zeros(len(keywords), dtype=np.int64)
    off = 0
    for i, (kw, a) in enumerate(keywords):
        kw_off[i], kw_len[i], kw_act[i] = off, len(kw), a
        off += len(kw)
    return KeywordTable(has, start, ent_kw, ent_shift, kw_bytes, kw_off, kw_len, kw_act)


@njit(**KERNEL)
def strip_ansi(buf):
    """Copy of ``buf`` without ``ESC [ digits/; m`` colour sequences."""
    n = buf.shape[0]
    out = np.empty(n, dtype=np.uint8)
    j = 0
    i = 0
    while i < n:
        b = at(buf, i)
        if b == 27 and i + 1 < n and at(buf, i + 1) == 91:
            k = i + 2
            while k < n and ((at(buf, k) >= 48 and at(buf, k) <= 57) or at(buf, k) == 59):
                k += 1
            if k < n and at(buf, k) == 109:
                i = k + 1
                continue
        out[j] = b
        j += 1
        i += 1
    return out[:j]


_NL = np.uint64(0x0A0A0A0A0A0A0A0A)
_ESC8 = np.uint64(0x1B1B1B1B1B1B1B1B)
_L7F = np.uint64(0x7F7F7F7F7F7F7F7F)


@njit(**KERNEL)
def split_lines(buf, ls, le):
    """Fill ``ls``/``le`` with line start/end offsets (end excludes ``\\n`` and a trailing
    ``\\r``). Returns (line count or -1 when the arrays are too small, how many eight-byte
    words hold an ESC byte: 0 when there is no colour to strip).

    Eight bytes are tested for newlines at once: ``~(((y & 7f..) + 7f..) | y) & 80..`` marks
    exactly the zero bytes of ``y = word ^ 0a..``, and each mark is taken with one
    count-trailing-zeros, so lines cost per newline, not per byte.
    """
    n = buf.shape[0]
    cap = ls.shape[0]
    k = 0
    s = 0
    esc = 0
    nw = n // 8
    for j in range(nw + 1):
        if j < nw:
            x = load_u64(buf, j * 8)
            y = x ^ _NL
            z = ~(((y & _L7F) + _L7F) | y) & _HIGH
            y = x ^ _ESC8  # in the same pass: a separate one would read the block twice
            esc += (~(((y & _L7F) + _L7F) | y) & _HIGH) != 0
        else:  # the bytes after the last whole word
            z = np.uint64(0)
            for u in range(n - nw * 8):
                esc += at(buf, nw * 8 + u) == 27
                if at(buf, nw * 8 + u) == 10:
                    z |= np.uint64(0x80) << np.uint64(8 * u)
        while z != 0:
            i = j * 8 + np.int64(ctz(z) >> np.uint64(3))
            z &= z - np.uint64(1)
            if k >= cap:
                return -1, esc
            e = i
            if e > s and at(buf, e - 1) == 13:
                e -= 1
            ls[k] = s
            le[k] = e
            k += 1
            s = i + 1
    if s < n:
        if k >= cap:
            return -1, esc
        e = n
        if at(buf, e - 1) == 13:
            e -= 1
        ls[k] = s
        le[k] = e
        k += 1
    return k, esc


@njit(inline="always")
def _digits(buf, p, k):
    v = 0
    for j in range(k):
        c = at(buf, p + j)
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(inline="always")
def _days_from_civil(y, m, d):
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m + 9 if m <= 2 else m - 3
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_NO_TS = -(np.int64(1) << 62)


@njit(inline="always")
def _ts_minute(buf, p, e):
    """Date, hour and minute of an RFC3339-ish timestamp at ``p`` as epoch ms (its zone not
    yet applied), or -1."""
    if e - p < 19:
        return np.int64(-1)
    y = _digits(buf, p, 4)
    if y < 0 or at(buf, p + 4) != 45 or at(buf, p + 7) != 45:
        return np.int64(-1)
    mo = _digits(buf, p + 5, 2)
    d = _digits(buf, p + 8, 2)
    sep = at(buf, p + 10)
    if mo < 1 or mo > 12 or d < 1 or d > 31 or (sep != 84 and sep != 32 and sep != 116):
        return np.int64(-1)
    hh = _digits(buf, p + 11, 2)
    mi = _digits(buf, p + 14, 2)
    if hh < 0 or hh > 23 or mi < 0 or mi > 59 or at(buf, p + 13) != 58:
        return np.int64(-1)
    return np.int64((_days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60) * 1000)


@njit(inline="always")
def _ts_tail(buf, p, e):
    """The rest of the timestamp at ``p`` (whose first 16 bytes `_ts_minute` accepted):
    seconds, fraction and zone. Returns (ms past the minute minus the zone's offset, end) or
    (``_NO_TS``, p)."""
    ss = _digits(buf, p + 17, 2)
    if ss < 0 or ss > 60 or at(buf, p + 16) != 58:
        return _NO_TS, p
    q = p + 19
    ms = 0
    if q < e and (at(buf, q) == 46 or at(buf, q) == 44):
        q += 1
        nd = 0
        while q < e and at(buf, q) >= 48 and at(buf, q) <= 57:
            if nd < 3:
                ms = ms * 10 + (at(buf, q) - 48)
            nd += 1
            q += 1
        if nd == 0:
            return _NO_TS, p
        while nd < 3:
            ms *= 10
            nd += 1
    off = 0
    if q < e and (at(buf, q) == 90 or at(buf, q) == 122):
        q += 1
    elif q + 5 < e + 1 and q < e and (at(buf, q) == 43 or at(buf, q) == 45):
        oh = _digits(buf, q + 1, 2) if q + 3 <= e else -1
        if oh < 0:
            return _NO_TS, p
        om = 0
        r = q + 3
        if r < e and at(buf, r) == 58:
            r += 1
        if r + 2 <= e:
            om = _digits(buf, r, 2)
            if om < 0:
                om = 0
            else:
                r += 2
        off = (oh * 60 + om) * 60
        if at(buf, q) == 45:
            off = -off
        q = r
    return np.int64((ss - off) * 1000 + ms), q


@njit(inline="always")
def parse_ts(buf, p, e, tp, tbase):
    """RFC3339-ish timestamp at ``p``: returns (epoch_ms, end, tp, tbase), (-1, p, …) when
    there is none.

    ``tp``/``tbase`` carry, from one call to the next over the same buffer, where the
    previous timestamp started and its minute (start with -1, 0): consecutive lines share
    the first 16 bytes (date, hour, minute), which are then compared as two words, not
    parsed again. (Locals, not a small array: stores to an array would keep the compiler
    from keeping the buffer's loads in registers.)
    """
    if e - p < 19:
        return np.int64(-1), p, tp, tbase
    if not (tp >= 0 and load_u64(buf, p) == load_u64(buf, tp) and load_u64(buf, p + 8) == load_u64(buf, tp + 8)):
        tbase = _ts_minute(buf, p, e)
        if tbase < 0:
            return np.int64(-1), p, np.int64(-1), tbase
        tp = p
    d, q = _ts_tail(buf, p, e)
    if d == _NO_TS or tbase + d < 0:
        return np.int64(-1), p, tp, tbase
    return tbase + d, q, tp, tbase


@njit(inline="always")
def _ts_has_401(buf, p, q):
    """Whether the timestamp ``buf[p:q]`` (which `parse_ts` accepted) holds "401": only in
    the year or in the fraction and zone, as the other digit groups are two wide."""
    if (at(buf, p) == 52 and at(buf, p + 1) == 48 and at(buf, p + 2) == 49) or \
            (at(buf, p + 1) == 52 and at(buf, p + 2) == 48 and at(buf, p + 3) == 49):
        return True
    for k in range(p + 19, q - 2):
        if at(buf, k) == 52 and at(buf, k + 1) == 48 and at(buf, k + 2) == 49:
            return True
    return False


@njit(inline="always")
def _same_bytes(buf, a, b, n):
    """``buf[a:a+n] == buf[b:b+n]``, eight bytes per step (the last word overlaps the one
    before it rather than going byte by byte)."""
    if n < 8:
        for k in range(n):
            if at(buf, a + k) != at(buf, b + k):
                return False
        return True
    k = 0
    while k + 8 < n:
        if load_u64(buf, a + k) != load_u64(buf, b + k):
            return False
        k += 8
    return load_u64(buf, a + n - 8) == load_u64(buf, b + n - 8)


@njit(inline="always")
def _hash_range(buf, s, e):
    h = FNV_OFF
    for i in range(s, e):
        h = (h ^ np.uint64(at(buf, i))) * FNV_PRIME
    return h


@njit(inline="always")
def intern(keys, used, pos_s, pos_e, h, s, e):
    """Small open-addressing table: returns the id for hash ``h`` (-1 when full).

    ``used[0]`` counts entries; a new entry records where its text lives so the caller can
    read it right after the kernel returns (``pos_s``/``pos_e`` are reset per call).
    """
    cap = keys.shape[0]
    if h == 0:
        h = np.uint64(1)
    i = np.int64(h & np.uint64(cap - 1))
    for _ in range(cap):
        k = keys[i]
        if k == h:
            return i
        if k == 0:
            if used[0] * 4 >= cap * 3:
                return -1
            keys[i] = h
            used[0] += 1
            pos_s[i] = s
            pos_e[i] = e
            return i
        i = (i + 1) & (cap - 1)
    return -1


@njit(inline="always")
def _level_code(buf, s, e):
    n = e - s
    if n <= 0:
        return L_NONE
    c = at(buf, s) | 32
    if c == 105:  # info
        return L_INFO
    if c == 101:  # error / err
        return L_ERROR
    if c == 119:  # warn / warning
        return L_WARN
    if c == 100:  # debug
        return L_DEBUG
    if c == 102 or c == 99:  # fatal / crit
        return L_ERROR
    return L_OTHER


_APP, _RUNNER, _PROXY, _HEALTH = (np.frombuffer(w, dtype=np.uint8).copy() for w in (b"app", b"runner", b"proxy", b"health"))


@njit(inline="always")
def _same(buf, s, word):
    for j in range(word.shape[0]):
        if at(buf, s + j) != word[j]:
            return False
    return True


@njit(inline="always")
def _provider_code(buf, s, e):
    n = e - s
    if n == 3 and _same(buf, s, _APP):
        return P_APP
    if n == 6 and _same(buf, s, _RUNNER):
        return P_RUNNER
    if n == 5 and _same(buf, s, _PROXY):
        return P_PROXY
    if n == 6 and _same(buf, s, _HEALTH):
        return P_HEALTH
    return P_OTHER


@njit(inline="always")
def _skip_value(buf, q, e):
    """Skip a field value (quoted with escapes, or up to the next space)."""
    if q < e and at(buf, q) == 34:
        q += 1
        while q < e and at(buf, q) != 34:
            if at(buf, q) == 92:
                q += 1
            q += 1
        return min(q + 1, e)
    while q < e and at(buf, q) != 32:
        q += 1
    return q


@njit(inline="always")
def _is_space(c):
    """What ``str.lstrip()`` strips among single bytes (ASCII whitespace and \\x1c-\\x1f)."""
    return c == 32 or (c >= 9 and c <= 13) or (c >= 28 and c <= 31)


@njit(inline="always")
def _python_may_parse(buf, s, e):
    """Whether `engine.Worker._slow` could parse the line at s: it starts with a digit (or
    a byte of a non-ASCII one), ``e`` (``error.message=``) or, after whitespace, ``{``."""
    if s >= e:
        return False
    c = at(buf, s)
    if (c >= 48 and c <= 57) or c >= 128 or c == 101:
        return True
    p = s
    while p < e and _is_space(at(buf, p)):
        p += 1
    return p < e and at(buf, p) == 123


_PBITS = 4  # parse_text's prefix cache: 16 slots
_PSLOTS = 1 << _PBITS
_PMUL1 = np.uint64(0x9E3779B97F4A7C15)
_PMUL2 = np.uint64(0xBF58476D1CE4E5B9)


@njit(**KERNEL)
def parse_text(buf, n, lines, inames, rnames):
    """Parse ``fly logs`` text layouts.

    Accepted: ``[error.message="…" ]<ts> <provider>[<id>] <region> [<level>][ fields ]<msg>``
    and the older ``<ts> <id> <region> [<level>] <msg>``. Anything else gets ``F_SLOW``.
    Fills the first ``n`` rows of ``lines`` (a `Lines`): ts_ms, provider, instance id,
    region id, level, msg start/end, status from ``response.status=`` (0 if none), flags,
    scan spans; names go to the `Names` tables ``inames``/``rnames``.

    An app's lines come from a few machines: the bytes between a line's timestamp and the
    end of its level (``app[id] region [level]``) are looked up among the last prefixes
    read (16 slots, by a hash of their first 16 bytes) and, when equal to one, its provider,
    ids, level and "plain" verdict are reused, not read again.
    """
    ls, le, ts, prov, inst, reg, lvl = lines.ls, lines.le, lines.ts, lines.prov, lines.inst, lines.reg, lines.lvl
    ms, me, st, fl, ks, ke, kn = lines.ms, lines.me, lines.st, lines.fl, lines.ks, lines.ke, lines.kn
    inst_keys, inst_used, inst_s, inst_e = inames
    reg_keys, reg_used, reg_s, reg_e = rnames
    tp, tbase = np.int64(-1), np.int64(0)  # see parse_ts
    # recently read " provider[id] region [level]" prefixes, filed by a hash of their first 16
    # bytes: [start, length, provider, instance id, region id, level, plain, level offset]
    pcache = np.zeros((_PSLOTS, 8), dtype=np.int64)
    for i in range(n):
        s = ls[i]
        e = le[i]
        ms[i] = s
        me[i] = e
        ts[i] = -1
        prov[i] = 0
        inst[i] = -1
        reg[i] = -1
        lvl[i] = 0
        st[i] = 0
        fl[i] = 0
        kn[i] = 1
        ks[i * SPANS] = s
        ke[i * SPANS] = e
        p = s
        em_s = -1
        em_e = -1
        # error.message="…" written before the timestamp (render.LogEntry quirk)
        if e - p > 15 and at(buf, p) == 101 and at(buf, p + 5) == 46 and at(buf, p + 13) == 61 and at(buf, p + 14) == 34:
            q = p + 15
            em_s = q
            while q < e and at(buf, q) != 34:
                if at(buf, q) == 92:
                    q += 1
                q += 1
            em_e = min(q, e)
            p = q + 1
            while p < e and at(buf, p) == 32:
                p += 1
        t, q, tp, tbase = parse_ts(buf, p, e, tp, tbase)
        if t < 0 or q >= e or at(buf, q) != 32:
            # Python's parsers (engine.Worker._slow) read only lines that start with a digit
            # (other timestamp forms, dashboard copies), error.message= or a JSON object;
            # the rest (stack-trace continuations, wrapped text) are unparsed here and now
            if _python_may_parse(buf, s, e):
                fl[i] = F_SLOW
            continue
        ts_end = q
        slot = -1
        hit = False
        if ts_end + 16 <= e:
            h16 = (load_u64(buf, ts_end) ^ (load_u64(buf, ts_end + 8) * _PMUL1)) * _PMUL2
            slot = np.int64(h16 >> np.uint64(64 - _PBITS))
            pl = pcache[slot, 1]
            if pl > 0 and ts_end + pl <= e and _same_bytes(buf, pcache[slot, 0], ts_end, pl):
                hit = True
                pv = pcache[slot, 2]
                iid = pcache[slot, 3]
                rid = pcache[slot, 4]
                lv = pcache[slot, 5]
                plain = pcache[slot, 6] != 0
                l0 = ts_end + pcache[slot, 7]
                q = ts_end + pl
        if not hit:
            q += 1
            # token 2: provider[instance] or bare instance
            a = q
            while q < e and at(buf, q) != 32 and at(buf, q) != 91:
                q += 1
            if q >= e:
                fl[i] = F_SLOW
                continue
            if at(buf, q) == 91:
                pv = _provider_code(buf, a, q)
                q += 1
                b = q
                while q < e and at(buf, q) != 93:
                    q += 1
                if q >= e or q == b:
                    fl[i] = F_SLOW
                    continue
                ie = q
                q += 1
                if q >= e or at(buf, q) != 32:
                    fl[i] = F_SLOW
                    continue
            else:
                pv = P_NONE
                b = a
                ie = q
                if ie - b < 4:
                    fl[i] = F_SLOW
                    continue
            q += 1
            # region
            r0 = q
            while q < e and at(buf, q) != 32:
                q += 1
            if q >= e or q - r0 < 2 or q - r0 > 8:
                fl[i] = F_SLOW
                continue
            r1 = q
            q += 1
            if q >= e or at(buf, q) != 91:
                fl[i] = F_SLOW
                continue
            q += 1
            l0 = q
            while q < e and at(buf, q) != 93 and q - l0 < 12:
                q += 1
            if q >= e or at(buf, q) != 93:
                fl[i] = F_SLOW
                continue
            lv = _level_code(buf, l0, q)
            q += 1
            # hash the id and region, noting on the way whether they are plain (hex id, letters
            # region, no "401"): then no keyword can hide before the level
            ih = FNV_OFF
            plain = pv != P_OTHER
            c1 = 0
            c2 = 0
            for k in range(b, ie):
                c = at(buf, k)
                ih = (ih ^ np.uint64(c)) * FNV_PRIME
                if not ((c >= 48 and c <= 57) or (c >= 97 and c <= 102)) or (c == 49 and c1 == 48 and c2 == 52):
                    plain = False
                c2 = c1
                c1 = c
            rh = FNV_OFF
            if r1 - r0 > 3:
                plain = False  # real regions have three letters; a longer word could be a keyword
            for k in range(r0, r1):
                c = at(buf, k)
                rh = (rh ^ np.uint64(c)) * FNV_PRIME
                if (c | 32) < 97 or (c | 32) > 122:
                    plain = False
            iid = intern(inst_keys, inst_used, inst_s, inst_e, ih, b, ie)
            rid = intern(reg_keys, reg_used, reg_s, reg_e, rh, r0, r1)
            if slot >= 0:
                pcache[slot, 0] = ts_end
                pcache[slot, 1] = q - ts_end
                pcache[slot, 2] = pv
                pcache[slot, 3] = iid
                pcache[slot, 4] = rid
                pcache[slot, 5] = lv
                pcache[slot, 6] = 1 if plain else 0
                pcache[slot, 7] = l0 - ts_end
        # optional fields before the message
        if q < e and at(buf, q) == 32:
            q += 1
        status = 0
        while q + 6 < e and (
            (at(buf, q) == 114 and (at(buf, q + 1) == 101)) or (at(buf, q) == 101 and at(buf, q + 1) == 114 and at(buf, q + 5) == 46)
        ):
            k = q
            while k < e and at(buf, k) != 61 and at(buf, k) != 32:
                k += 1
            if k >= e or at(buf, k) != 61 or k - q < 8:
                break
            # response.status=NNN
            if k - q == 15 and at(buf, q + 2) == 115 and at(buf, q + 9) == 115:
                v = _digits(buf, k + 1, 3) if k + 4 <= e else -1
                if v >= 100 and v <= 599:
                    status = v
            q = _skip_value(buf, k + 1, e)
            while q < e and at(buf, q) == 32:
                q += 1
        inst[i] = iid
        reg[i] = rid
        ts[i] = t
        prov[i] = pv
        lvl[i] = lv
        st[i] = status
        if em_s >= 0:
            ms[i] = em_s
            me[i] = em_e
        else:
            ms[i] = q
            # Before the level, a keyword can only be the digits 401: in the timestamp, or in
            # the id (checked above). Without one, the scan starts at the level, or after the
            # timestamp.
            if not _ts_has_401(buf, p, ts_end):
                ks[i * SPANS] = l0 - 1 if plain else ts_end
        fl[i] = F_PARSED | F_TS


@njit(inline="always")
def _match_key(buf, q, e, key):
    """``"key"`` (case-insensitive) then optional spaces, ``:`` and spaces: value start or -1."""
    k = key.shape[0]
    if q + k + 2 > e:
        return -1
    for j in range(k):
        if (at(buf, q + 1 + j) | 32) != key[j]:
            return -1
    r = q + 1 + k
    if at(buf, r) != 34:
        return -1
    r += 1
    while r < e and at(buf, r) == 32:
        r += 1
    if r >= e or at(buf, r) != 58:
        return -1
    r += 1
    while r < e and at(buf, r) == 32:
        r += 1
    return r


@njit(inline="always")
def _string_end(buf, q, e):
    """End of the JSON string whose contents start at q (its closing quote), at most e: a
    backslash as the line's last byte must not carry the end past the line."""
    while q < e and at(buf, q) != 34:
        if at(buf, q) == 92:
            q += 1
        q += 1
    return min(q, e)


# The fly-log-shipper (Vector) record, keys in the order Vector writes them. Lines in exactly
# this shape are read by comparing these literals; any other shape takes the generic scanner.
_SHIP_PARTS = (b'{"event":{"provider":"', b'"},"fly":{"app":{"instance":"', b'","name":"', b'"},"region":"',
               b'"},"host":"', b'","log":{"level":"', b'"},"message":"', b'","timestamp":"', b'"}')
_SHIP_BYTES = np.frombuffer(b"".join(_SHIP_PARTS), dtype=np.uint8).copy()
_SHIP_OFF = np.cumsum([0] + [len(x) for x in _SHIP_PARTS]).astype(np.int64)
_SHIP_MESSAGE = 6  # the value after this literal may hold escapes
_SHIP_LEN = np.array([len(x) for x in _SHIP_PARTS], dtype=np.int64)
# each literal as little-endian words with the mask of the bytes they hold: compared eight
# bytes at a time
_SHIP_WORDS = np.zeros((len(_SHIP_PARTS), 4), dtype=np.uint64)
_SHIP_MASKS = np.zeros((len(_SHIP_PARTS), 4), dtype=np.uint64)
for _i, _part in enumerate(_SHIP_PARTS):
    for _k in range(0, len(_part), 8):
        _SHIP_WORDS[_i, _k // 8] = int.from_bytes(_part[_k : _k + 8], "little")
        _SHIP_MASKS[_i, _k // 8] = (1 << (8 * len(_part[_k : _k + 8]))) - 1
_SHIP_NWORDS = (_SHIP_LEN + 7) // 8


@njit(inline="always")
def _value_slot(buf, a, z, nbuf):
    """Cache slot of the value ``buf[a:z]``: a hash of its length and first eight bytes."""
    if a + 8 <= nbuf:
        w = load_u64(buf, a)
        if z - a < 8:
            w &= (np.uint64(1) << np.uint64(8 * (z - a))) - np.uint64(1)
    else:
        w = np.uint64(0)
        for k in range(min(z - a, 8)):
            w |= np.uint64(at(buf, a + k)) << np.uint64(8 * k)
    return np.int64(((w ^ np.uint64(z - a)) * _PMUL2) >> np.uint64(64 - _PBITS))


@njit(**KERNEL)
def parse_ndjson(buf, n, lines, inames, rnames, json_keys):
    """Pull timestamp/message/instance/region/provider/level out of one-object-per-line JSON.

    Keys are found anywhere in the object (shipper and flyctl shapes nest them differently);
    a key inside a JSON string cannot match because its quotes are escaped there. Lines that
    do not look like an object with a message get ``F_SLOW`` (Python's json decides). Records
    in the shipper's exact shape take a literal-matching fast path first. ``json_keys``: the
    six key names the generic path looks for (timestamp, message, instance, region,
    provider, level).
    """
    ls, le, ts, prov, inst, reg, lvl = lines.ls, lines.le, lines.ts, lines.prov, lines.inst, lines.reg, lines.lvl
    ms, me, st, fl, ks, ke, kn = lines.ms, lines.me, lines.st, lines.fl, lines.ks, lines.ke, lines.kn
    inst_keys, inst_used, inst_s, inst_e = inames
    reg_keys, reg_used, reg_s, reg_e = rnames
    k_ts, k_msg, k_inst, k_reg, k_prov, k_lvl = json_keys
    nbuf = buf.shape[0]
    vs = np.zeros(8, dtype=np.int64)
    ve = np.zeros(8, dtype=np.int64)
    tp, tbase = np.int64(-1), np.int64(0)  # see parse_ts
    # instance and region values read on the fast path, filed by a hash of their first
    # bytes: [start, length, id]; a machine's next line compares bytes instead of hashing
    # and looking its value up again
    icache = np.full((_PSLOTS, 3), -1, dtype=np.int64)
    rcache = np.full((_PSLOTS, 3), -1, dtype=np.int64)
    for i in range(n):
        s = ls[i]
        e = le[i]
        ms[i] = s
        me[i] = e
        ts[i] = -1
        prov[i] = 0
        inst[i] = -1
        reg[i] = -1
        lvl[i] = 0
        st[i] = 0
        fl[i] = 0
        kn[i] = 1
        ks[i * SPANS] = s
        ke[i * SPANS] = e
        # fast path: the shipper's exact shape (literal compares, written out: helper calls
        # with array arguments would add reference counting to every line)
        q = s
        ok = True
        for step in range(9):
            ln = _SHIP_LEN[step]
            if q + ln > e:
                ok = False
                break
            if q + 32 <= nbuf:  # whole words may be read (the masks ignore what follows)
                for k in range(_SHIP_NWORDS[step]):
                    if (load_u64(buf, q + 8 * k) & _SHIP_MASKS[step, k]) != _SHIP_WORDS[step, k]:
                        ok = False
                        break
            else:
                o0 = _SHIP_OFF[step]
                for j in range(ln):
                    if at(buf, q + j) != _SHIP_BYTES[o0 + j]:
                        ok = False
                        break
            if not ok:
                break
            q += ln
            if step == 8:
                ok = q == e
                break
            v0 = q
            q = _find_quote_or_backslash(buf, q, e)
            if step == _SHIP_MESSAGE:
                while q < e and at(buf, q) == 92:  # an escape: skip it and the byte it escapes
                    q = _find_quote_or_backslash(buf, q + 2, e)
            elif q < e and at(buf, q) == 92:
                ok = False  # escapes only in the message; elsewhere the generic path decodes
                break
            if q >= e:
                ok = False
                break
            vs[step] = v0
            ve[step] = q
        if ok:
            t, _x, tp, tbase = parse_ts(buf, vs[7], ve[7], tp, tbase)
            ts[i] = t
            prov[i] = _provider_code(buf, vs[0], ve[0])
            a, z = vs[1], ve[1]
            c = _value_slot(buf, a, z, nbuf)
            if not (icache[c, 1] == z - a and _same_bytes(buf, icache[c, 0], a, z - a)):
                icache[c, 0], icache[c, 1] = a, z - a
                icache[c, 2] = intern(inst_keys, inst_used, inst_s, inst_e, _hash_range(buf, a, z), a, z)
            inst[i] = icache[c, 2]
            a, z = vs[3], ve[3]
            c = _value_slot(buf, a, z, nbuf)
            if not (rcache[c, 1] == z - a and _same_bytes(buf, rcache[c, 0], a, z - a)):
                rcache[c, 0], rcache[c, 1] = a, z - a
                rcache[c, 2] = intern(reg_keys, reg_used, reg_s, reg_e, _hash_range(buf, a, z), a, z)
            reg[i] = rcache[c, 2]
            lvl[i] = _level_code(buf, vs[5], ve[5])
            ms[i] = vs[6]
            me[i] = ve[6]
            fl[i] = F_PARSED | (F_TS if t >= 0 else 0)
            # the literals between values hold no keyword: scan only the eight values
            kn[i] = 8
            for k in range(8):
                ks[i * SPANS + k] = vs[k]
                ke[i * SPANS + k] = ve[k]
            continue
        p = s
        while p < e and _is_space(at(buf, p)):
            p += 1
        if p >= e or at(buf, p) != 123:
            continue  # not an object: unparsed (Python's json would not read it either)
        m0 = -1
        m1 = -1
        t = np.int64(-1)
        pv = P_NONE
        lv = L_NONE
        iid = -1
        rid = -1
        q = p + 1
        while q < e:
            if at(buf, q) != 34:
                q += 1
                continue
            c = at(buf, q + 1) | 32 if q + 1 < e else 0
            v = -1
            which = 0
            if c == 116:
                v = _match_key(buf, q, e, k_ts)
                which = 1
            elif c == 109:
                v = _match_key(buf, q, e, k_msg)
                which = 2
            elif c == 105:
                v = _match_key(buf, q, e, k_inst)
                which = 3
            elif c == 114:
                v = _match_key(buf, q, e, k_reg)
                which = 4
            elif c == 112:
                v = _match_key(buf, q, e, k_prov)
                which = 5
            elif c == 108:
                v = _match_key(buf, q, e, k_lvl)
                which = 6
            if v < 0:
                # skip this string entirely (key or value)
                q = _string_end(buf, q + 1, e) + 1
                continue
            if v < e and at(buf, v) == 34:
                a = v + 1
                z = _string_end(buf, a, e)
                if which == 1:
                    tt, _x, tp, tbase = parse_ts(buf, a, z, tp, tbase)
                    if tt >= 0:
                        t = tt
                elif which == 2:
                    m0 = a
                    m1 = z
                elif which == 3:
                    iid = intern(inst_keys, inst_used, inst_s, inst_e, _hash_range(buf, a, z), a, z)
                elif which == 4:
                    rid = intern(reg_keys, reg_used, reg_s, reg_e, _hash_range(buf, a, z), a, z)
                elif which == 5:
                    pv = _provider_code(buf, a, z)
                elif which == 6:
                    lv = _level_code(buf, a, z)
                q = z + 1
            else:
                if which == 1:
                    # numeric epoch: seconds, milliseconds or nanoseconds by magnitude
                    a = v
                    val = np.int64(0)
                    nd = 0
                    while a < e and at(buf, a) >= 48 and at(buf, a) <= 57 and nd < 19:
                        val = val * 10 + (at(buf, a) - 48)
                        nd += 1
                        a += 1
                    if nd >= 9:
                        if nd <= 10:
                            t = val * 1000
                        elif nd <= 13:
                            t = val
                        elif nd <= 16:
                            t = val // 1000
                        else:
                            t = val // 1000000
                q = v
        if m0 < 0:
            fl[i] = F_SLOW
            continue
        ms[i] = m0
        me[i] = m1
        ts[i] = t
        prov[i] = pv
        lvl[i] = lv
        inst[i] = iid
        reg[i] = rid
        fl[i] = F_PARSED | (F_TS if t >= 0 else 0)


@njit(inline="always")
def _status_after_method(buf, q, e):
    """After ``METHOD `` (at q): path token, then the first 3-digit token within 7 tokens."""
    if q >= e:
        return 0
    c = at(buf, q)
    if c != 47 and c != 104 and c != 42:  # '/', 'http', '*'
        return 0
    ntok = 0
    while q < e and ntok < 7:
        while q < e and at(buf, q) != 32:
            q += 1
        while q < e and at(buf, q) == 32:
            q += 1
        ntok += 1
        # the status ends the line or is followed by a space, a comma, or the quote (or
        # backslash) that closes a JSON string holding the line
        if q + 3 <= e and (q + 3 == e or at(buf, q + 3) == 32 or at(buf, q + 3) == 44 or at(buf, q + 3) == 34
                           or at(buf, q + 3) == 92):
            v = _digits(buf, q, 3)
            if v >= 100 and v <= 599:
                return v
    return 0


@njit(inline="always")
def _status_after_key(buf, q, e):
    """After a status key ending at q: one to four of ``"`` ``:`` ``=`` space or backslash
    (``":502``, ``=502``, ``: 502``, and ``\\":502`` inside a JSON-escaped message), then
    three digits not followed by a fourth."""
    k = 0
    while q < e and k < 4 and (at(buf, q) == 34 or at(buf, q) == 58 or at(buf, q) == 61 or at(buf, q) == 32
                               or at(buf, q) == 92):
        q += 1
        k += 1
    if k == 0 or q + 3 > e:
        return 0
    if q + 3 < e and at(buf, q + 3) >= 48 and at(buf, q + 3) <= 57:
        return 0
    v = _digits(buf, q, 3)
    if v >= 100 and v <= 599:
        return v
    return 0


@njit(inline="always")
def _in_digit(buf, p, e):
    """``in `` and a digit at p."""
    return p + 3 < e and at(buf, p) == 105 and at(buf, p + 1) == 110 and at(buf, p + 2) == 32 \
        and at(buf, p + 3) >= 48 and at(buf, p + 3) <= 57


@njit(inline="always")
def _status_after_phrase(buf, q, e):
    """After ``Completed ``/``Sent `` at q: three digits, a space, then ``in <digit>``, after
    one more space or after a reason phrase (an uppercase letter and at most 40 letters,
    spaces, hyphens or apostrophes) and a space: Rails' ``Completed 500 Internal Server
    Error in 12ms``, Phoenix's ``Sent 500 in 12ms``."""
    if q + 4 >= e or at(buf, q + 3) != 32:
        return 0
    v = _digits(buf, q, 3)
    if v < 100 or v > 599:
        return 0
    r = q + 4
    if _in_digit(buf, r, e) or (at(buf, r) == 32 and _in_digit(buf, r + 1, e)):
        return v
    if at(buf, r) < 65 or at(buf, r) > 90:
        return 0
    k = r + 1
    while k < e and k - r - 1 <= 40:
        c = at(buf, k)
        if c == 32 and _in_digit(buf, k + 1, e):
            return v
        if not ((c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c == 32 or c == 45 or c == 39):
            return 0
        k += 1
    return 0


@njit(inline="always")
def _status_in_pipes(buf, q, e):
    """After ``[GIN] `` at q: the first ``|`` within 48 bytes, spaces, three digits, spaces
    and ``|`` (``[GIN] 2024/05/28 - 12:00:00 | 500 |  1.2ms | …``)."""
    k = q
    while k < e and k - q < 48 and at(buf, k) != 124:
        k += 1
    if k >= e or k - q >= 48:
        return 0
    k += 1
    s0 = k
    while k < e and at(buf, k) == 32:
        k += 1
    if k == s0 or k + 4 > e:
        return 0
    v = _digits(buf, k, 3)
    k += 3
    s1 = k
    while k < e and at(buf, k) == 32:
        k += 1
    if k == s1 or k >= e or at(buf, k) != 124 or v < 100 or v > 599:
        return 0
    return v


@njit(inline="always")
def _code_like(buf, comb, a, b):
    """``[A-Z]{2,}[0-9]+`` of at most 10 bytes (proxy/PostgREST codes stay in templates)."""
    if b - a > 10:
        return False
    k = a
    while k < b and (comb[at(buf, k)] >> 5) & 4:
        k += 1
    if k - a < 2 or k == b:
        return False
    while k < b:
        if not ((comb[at(buf, k)] >> 5) & 2):
            return False
        k += 1
    return True


_HIT_WINDOW = 4096  # positions whose key hit the table, checked in batches of at most this


@njit(**KERNEL)
def keywords(buf, n, lines, table, lower):
    """Keyword scan over each line's scan spans: seed categories, candidate families, status.

    The spans cover every byte of the raw line that can hold a keyword (the parsers leave
    out only JSON literals and timestamps, which cannot), so the categories are exactly
    what grep counts on the whole line. At every other position of a span, a key of 5 bits
    from each of three bytes looks up ``has`` (32 KiB, in L1); see `build_keyword_table`
    for why every occurrence is still seen. That first loop has no branch: it writes every
    position and advances its count by the table's 0 or 1, so the few per cent of positions
    that hit cost no mispredicted jump and the checks below stay out of the hot loop. Each
    keyword filed under a hit's key is then compared where its shift puts it. Sets category
    bits in ``fl``, fills ``st`` where still 0 (from the status trigger that starts first
    in the line and is followed by a status) and writes the candidate-family mask to ``cand``
    (of the first ``n`` rows of ``lines``); ``table`` is `build_keyword_table`'s.
    """
    ks, ke, kn, st, fl, cand = lines.ks, lines.ke, lines.kn, lines.st, lines.fl, lines.cand
    has, bg_start, ent_kw, ent_shift, kw_bytes, kw_off, kw_len, kw_act = table
    hits = np.empty(_HIT_WINDOW, dtype=np.int64)
    for i in range(n):
        acts = np.int64(0)
        status = np.int64(st[i])
        status_q = np.int64(-1)  # a status the parser set stays
        for sp in range(kn[i]):
            s = ks[i * SPANS + sp]
            e = ke[i * SPANS + sp]
            w0 = s + 2  # the trigram ending at p starts at p - 2 >= s
            while w0 < e:
                w1 = min(e, w0 + 2 * _HIT_WINDOW)
                nh = 0
                for p in range(w0, w1, 2):
                    key = ((np.int64(at(buf, p - 2)) & 31) << 10) | ((np.int64(at(buf, p - 1)) & 31) << 5) \
                        | (np.int64(at(buf, p)) & 31)  # == (lowercase & 31)
                    hits[nh] = p
                    nh += has[key]
                w0 = w1
                for h in range(nh):
                    p = hits[h]
                    key = ((np.int64(at(buf, p - 2)) & 31) << 10) | ((np.int64(at(buf, p - 1)) & 31) << 5) \
                        | (np.int64(at(buf, p)) & 31)
                    for j in range(bg_start[key], bg_start[key + 1]):
                        kid = ent_kw[j]
                        a = kw_act[kid]
                        q = p - 2 - ent_shift[j]
                        # the status comes from the trigger that starts first in the line
                        # (hits arrive roughly, not exactly, in line order)
                        want = (a & STATUS_BITS) != 0 and (status == 0 or q < status_q)
                        if (a & ~acts & ~STATUS_BITS) == 0 and not want:
                            continue  # everything this keyword could add is known already
                        kl = kw_len[kid]
                        if q < s or q + kl > e:
                            continue
                        ko = kw_off[kid]
                        ok = True
                        for u in range(kl):
                            if lower[at(buf, q + u)] != kw_bytes[ko + u]:
                                ok = False
                                break
                        if not ok:
                            continue
                        acts |= a
                        if want:
                            if a & A_STATUS_METHOD:
                                v = _status_after_method(buf, q + kl, e)
                            elif a & A_STATUS_KEY:
                                # a key ending in separators (status=, statuscode: ) reads
                                # its value from the first of them
                                b = q + kl
                                while b > q + kl - 2 and (at(buf, b - 1) == 61 or at(buf, b - 1) == 58
                                                          or at(buf, b - 1) == 32):
                                    b -= 1
                                v = _status_after_key(buf, b, e)
                            elif a & A_STATUS_PHRASE:
                                v = _status_after_phrase(buf, q + kl, e)
                            else:
                                v = _status_in_pipes(buf, q + kl, e)
                            if v != 0:
                                status = v
                                status_q = q
        fl[i] |= np.uint16(acts & 7)
        cand[i] = acts >> 8
        st[i] = status


_L20 = np.uint64(0x2020202020202020)


@njit(inline="always")
def _word_at(buf, p, nbuf):
    """Eight bytes from p as a little-endian word; zero bytes past the buffer's end."""
    if p + 8 <= nbuf:
        return load_u64(buf, p)
    x = np.uint64(0)
    for u in range(nbuf - p):
        x |= np.uint64(at(buf, p + u)) << np.uint64(8 * u)
    return x


@njit(inline="always")
def _in_range(v, lo, hi):
    """High bit of each byte of ``v`` (bytes below 0x80) that lies in [lo, hi]: adding
    0x80 - lo sets the high bit from lo up, adding 0x7F - hi from past hi (no carries)."""
    above_lo = v + np.uint64((0x80 - lo) * 0x0101010101010101)
    above_hi = v + np.uint64((0x7F - hi) * 0x0101010101010101)
    return above_lo & ~above_hi & _HIGH


@njit(inline="always")
def _equal(v, c):
    """High bit of each byte of ``v`` (bytes below 0x80) equal to c."""
    y = v ^ np.uint64(c * 0x0101010101010101)
    return ~(((y & _L7F) + _L7F) | y) & _HIGH


@njit(**KERNEL)
def templates(buf, n, lines, comb, tt):
    """Template slot of every message: a hash where tokens of ``[A-Za-z0-9_.-]`` (and ``@``
    after the first byte) holding a digit or an ``@``, or made of eight or more hex digits,
    count as one mask (ids, numbers, addresses, e-mails, digit-less hex ids); code-like
    tokens such as ``PC01`` are kept. The same rule as ``engine.mask_template``.

    Separators are hashed byte by byte; a token is read eight bytes at a time, its bytes
    and digits classified in the word at once, so its end costs one jump, not one per byte.

    Writes ``lines.slot`` (-1 once the table ``tt`` is 3/4 full and the template is new),
    sets ``F_HIDES`` on lines with a masked token holding letters beyond hex (a signal phrase
    could hide in it: see `chunks.hides_words`), and returns how many slots this call created
    (listed in ``lines.tnew``/``lines.tline``).
    """
    ms, me, slot, tmpl_new, tmpl_line = lines.ms, lines.me, lines.slot, lines.tnew, lines.tline
    tmpl_keys, tmpl_used, tmpl_other = tt.keys, tt.used, tt.other
    nbuf = buf.shape[0]
    cap = tmpl_keys.shape[0]
    nnew = 0
    fl = lines.fl
    for i in range(n):
        m0 = ms[i]
        m1 = me[i]
        h = FNV_OFF
        hides = False
        p = m0
        while p < m1:
            c = at(buf, p)
            if not (comb[c] >> 5):
                h = (h ^ np.uint64(c)) * FNV_PRIME
                p += 1
                continue
            t0 = p
            th = np.uint64(0)
            digits = np.uint64(0)
            ats = np.uint64(0)
            nonhex = np.uint64(0)
            words = np.uint64(0)  # letters g-z: what no number, address or hex id holds
            while p < m1:
                x = _word_at(buf, p, nbuf)
                v = x & _L7F
                # token bytes: letters, digits, _ . - and, after its first byte, @ (e-mails)
                tok = (_in_range(v | _L20, 97, 122) | _in_range(v, 48, 57) | _equal(v, 95) | _equal(v, 46)
                       | _equal(v, 45) | _equal(v, 64)) & ~x
                if m1 - p < 8:
                    tok &= (np.uint64(1) << np.uint64(8 * (m1 - p))) - np.uint64(1)
                stop = ~tok & _HIGH
                k = np.int64(8) if stop == 0 else np.int64(ctz(stop) >> np.uint64(3))
                if k == 0:
                    break
                keep = np.uint64(0xFFFFFFFFFFFFFFFF) if k == 8 else (np.uint64(1) << np.uint64(8 * k)) - np.uint64(1)
                th = (th ^ (x & keep)) * FNV_PRIME
                dig = _in_range(v, 48, 57)
                digits |= dig & keep
                ats |= _equal(v, 64) & keep
                nonhex |= tok & ~(dig | _in_range(v | _L20, 97, 102)) & keep
                words |= _in_range(v | _L20, 103, 122) & tok & keep
                p += k
                if k < 8:
                    break
            # ids, numbers, addresses, e-mails and hex of eight or more (digits or not) are
            # masked; a code such as PC01 or PGRST303 stays. (Quoted words stay too: signal
            # matches are cached per template, and a quoted code like "CERT_HAS_EXPIRED" must
            # not share one with "SELF_SIGNED_CERT".)
            masked = (digits != 0 or ats != 0 or (nonhex == 0 and p - t0 >= 8)) and not (
                digits != 0 and (comb[at(buf, t0)] >> 5) & 4 and p - t0 <= 10 and _code_like(buf, comb, t0, p))
            if masked:
                h = (h ^ MASK_MARK) * FNV_PRIME
                hides = hides or words != 0
            else:
                h = (h ^ (th * FNV_PRIME)) * FNV_PRIME
            if p < m1:  # the byte that ended the token is a separator
                h = (h ^ np.uint64(at(buf, p))) * FNV_PRIME
                p += 1
        if hides:
            fl[i] |= np.uint16(F_HIDES)
        if h == 0:
            h = np.uint64(1)
        j = np.int64(h & np.uint64(cap - 1))
        found = -1
        for _ in range(64):
            kk = tmpl_keys[j]
            if kk == h:
                found = j
                break
            if kk == 0:
                if tmpl_used[0] * 4 < cap * 3:
                    tmpl_keys[j] = h
                    tmpl_used[0] += 1
                    tmpl_new[nnew] = j
                    tmpl_line[nnew] = i
                    nnew += 1
                    found = j
                break
            j = (j + 1) & (cap - 1)
        slot[i] = found
        if found < 0:
            tmpl_other[0] += 1
    return nnew


@njit(**KERNEL)
def aggregate(n, lines, since, until, totals, tcount, max_examples):
    """Fold one chunk's per-line arrays into the worker's running totals.

    Lines outside ``[since, until)`` (timestamped ones only) are left out. Running totals:
    per instance and region ``[lines, errors, auth, database, http_5xx]`` (row = id + 1),
    status codes, categories, template counts. Returned for the chunk: parsed and filtered
    counts, first/last timestamp, per-minute counts ``(m0, [span, 5])`` (span -1 when the
    minutes are too spread out), per minute x instance ``[span, ni]`` lines and errors, the
    first/last 5xx lines, and the candidate lines for the signal matchers.
    """
    ts, inst, reg, fl, st = lines.ts, lines.inst, lines.reg, lines.fl, lines.st
    slot, cand, inw = lines.slot, lines.cand, lines.inw
    acc_inst, acc_reg, acc_status, acc_cat = totals
    rows = acc_inst.shape[0]
    filtered = 0
    parsed = 0
    tmin = np.int64(1) << 62
    tmax = -(np.int64(1) << 62)
    ni = 1
    for i in range(n):
        t = ts[i]
        if fl[i] & F_PARSED:
            parsed += 1
        inw[i] = True
        if t >= 0 and (t < since or t >= until):
            inw[i] = False
            filtered += 1
            continue
        if t >= 0:
            if t < tmin:
                tmin = t
            if t > tmax:
                tmax = t
        r = inst[i] + 1
        if r > ni - 1:
            ni = r + 1
    m0 = tmin // 60000 if tmax >= tmin else 0
    span = (tmax // 60000 - m0 + 1) if tmax >= tmin else 0
    if span > 2_000_000:
        span = -1
    mc = np.zeros((max(span, 0), 5), dtype=np.int64)
    big = span > 0 and span * ni > 8_000_000
    im_l = np.zeros((0 if (span <= 0 or big) else span, ni), dtype=np.int64)
    im_e = np.zeros((0 if (span <= 0 or big) else span, ni), dtype=np.int64)
    ex5 = np.full(max_examples, -1, dtype=np.int64)
    n5 = 0
    last5 = -1
    first5 = -1
    ncand = 0
    for i in range(n):
        if cand[i] != 0 and inw[i]:
            ncand += 1
    cidx = np.empty(ncand, dtype=np.int64)
    k = 0
    for i in range(n):
        if not inw[i]:
            continue
        f = fl[i]
        e_ = 1 if f & F_ERR else 0
        a_ = 1 if f & F_AUTH else 0
        d_ = 1 if f & F_DB else 0
        s = st[i]
        h5 = 1 if s >= 500 else 0
        acc_cat[0] += e_
        acc_cat[1] += a_
        acc_cat[2] += d_
        if s > 0:
            acc_status[s] += 1
        r = inst[i] + 1
        if r < 0 or r >= rows:
            r = 0
        acc_inst[r, 0] += 1
        acc_inst[r, 1] += e_
        acc_inst[r, 2] += a_
        acc_inst[r, 3] += d_
        acc_inst[r, 4] += h5
        g = reg[i] + 1
        if g < 0 or g >= rows:
            g = 0
        acc_reg[g, 0] += 1
        acc_reg[g, 1] += e_
        acc_reg[g, 2] += a_
        acc_reg[g, 3] += d_
        acc_reg[g, 4] += h5
        sl = slot[i]
        if sl >= 0:
            tcount[sl] += 1
        t = ts[i]
        if t >= 0 and span > 0:
            b = t // 60000 - m0
            mc[b, 0] += 1
            mc[b, 1] += e_
            mc[b, 2] += a_
            mc[b, 3] += d_
            mc[b, 4] += h5
            if im_l.shape[0] > 0:
                im_l[b, inst[i] + 1] += 1
                im_e[b, inst[i] + 1] += e_
        if h5:
            if n5 < max_examples:
                ex5[n5] = i
            if first5 < 0:
                first5 = i
            last5 = i
            n5 += 1
        if cand[i] != 0:
            cidx[k] = i
            k += 1
    return parsed, filtered, tmin, tmax, m0, span, mc, im_l, im_e, n5, first5, last5, ex5, cidx


@njit(**KERNEL)
def parse_bare(buf, n, lines):
    """Lines without Fly's layout: each whole line is the message. When it starts with an
    RFC3339 timestamp and a space (an app's own log), the timestamp dates the line and is
    left out of the message; the keyword scan skips it as `parse_text` does (only ``401``
    could hide in it)."""
    ls, le, ts, prov, inst, reg, lvl = lines.ls, lines.le, lines.ts, lines.prov, lines.inst, lines.reg, lines.lvl
    ms, me, st, fl, ks, ke, kn = lines.ms, lines.me, lines.st, lines.fl, lines.ks, lines.ke, lines.kn
    tp, tbase = np.int64(-1), np.int64(0)  # see parse_ts
    for i in range(n):
        s = ls[i]
        e = le[i]
        ts[i] = -1
        prov[i] = 0
        inst[i] = -1
        reg[i] = -1
        lvl[i] = 0
        ms[i] = s
        me[i] = e
        st[i] = 0
        fl[i] = F_PARSED
        kn[i] = 1
        ks[i * SPANS] = s
        ke[i * SPANS] = e
        if e - s < 20 or at(buf, s) < 48 or at(buf, s) > 57:
            continue
        t, q, tp, tbase = parse_ts(buf, s, e, tp, tbase)
        if t < 0 or q >= e or (at(buf, q) != 32 and at(buf, q) != 9):
            continue
        ts[i] = t
        fl[i] = F_PARSED | F_TS
        m = q
        while m < e and (at(buf, m) == 32 or at(buf, m) == 9):
            m += 1
        ms[i] = m
        if not _ts_has_401(buf, s, q):
            ks[i * SPANS] = q


MODE_TEXT, MODE_NDJSON, MODE_BARE = 0, 1, 2


@njit(**KERNEL)
def stage_a(buf, mode, check_esc, lines, inames, rnames, json_keys):
    """Split and parse one chunk in a single call (one GIL hand-off instead of several).

    Returns (lines, words holding an ESC byte). Lines is -1 when the per-line arrays are too
    small, and 0 with ESC > 0 (when ``check_esc``) when colours must be stripped first; the
    caller then retries.
    """
    n, esc = split_lines(buf, lines.ls, lines.le)
    if n < 0 or (check_esc and esc > 0):
        return (n if n < 0 else 0), esc
    if mode == MODE_TEXT:
        parse_text(buf, n, lines, inames, rnames)
    elif mode == MODE_NDJSON:
        parse_ndjson(buf, n, lines, inames, rnames, json_keys)
    else:
        parse_bare(buf, n, lines)
    return n, esc


@njit(**KERNEL)
def stage_b(buf, n, lines, lower, comb, table, tt, since, until, totals, max_examples):
    """Keywords, templates and aggregation of one parsed chunk in a single call.

    Returns (template slots created, then everything `aggregate` returns).
    """
    keywords(buf, n, lines, table, lower)
    nnew = templates(buf, n, lines, comb, tt)
    agg = aggregate(n, lines, since, until, totals, tt.count, max_examples)
    return nnew, agg
