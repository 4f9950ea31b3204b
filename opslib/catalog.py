"""Runbook discovery and parameter validation.

A runbook is ``notebooks/<name>.ipynb``. Its parameters are declared in the cell tagged
``parameters``, one per line, ``name = <literal>  # one-line description``; the literal's type
is the parameter's type. Values given on the command line are validated against those
declarations *before* anything runs: papermill alone only warns about unknown names and emits
names verbatim into code (reference/reliability-security.md §2).
"""
from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .redact import looks_secret

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Parameter names that would carry a secret: secrets come from the environment only.
_SECRET_PARAM = re.compile(r"(token|password|passwd|secret|api_?key|anon_key|dsn|database_url)",
                           re.I)


def notebooks_dir() -> Path:
    return Path(os.environ.get("OPSLIB_NOTEBOOKS") or REPO_ROOT / "notebooks")


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # str | int | float | bool | list | dict | any
    default: Any
    description: str


@dataclass(frozen=True)
class Runbook:
    name: str
    path: Path
    title: str
    params: tuple[Param, ...] = field(default_factory=tuple)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def usage(self) -> str:
        lines = [f"parameters of {self.name}:"]
        for p in self.params:
            lines.append(f"  {p.name:<18} {p.type:<5} default {p.default!r:<14} {p.description}")
        return "\n".join(lines)


def _type_name(value: Any) -> str:
    for t in (bool, int, float, str, list, dict):
        if isinstance(value, t):
            return t.__name__
    return "any"


def parse_parameters(source: str) -> tuple[Param, ...]:
    """Parse a parameters cell: assignments of literals, each with a trailing comment."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise UsageError(f"parameters cell is not valid Python: {exc}") from exc
    lines = source.splitlines()
    params = []
    for node in tree.body:
        if not (isinstance(node, (ast.Assign, ast.AnnAssign))):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
            continue
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            continue
        line = lines[node.lineno - 1]
        desc = line.split("#", 1)[1].strip() if "#" in line[node.value.end_col_offset:] else ""
        params.append(Param(targets[0].id, _type_name(default), default, desc))
    return tuple(params)


def load_runbook(path: Path) -> Runbook:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    title = ""
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            text = "".join(cell.get("source", ""))
            first = next((ln for ln in text.splitlines() if ln.strip()), "")
            title = first.lstrip("#").strip()
            break
    pcell = next((c for c in cells if c.get("cell_type") == "code"
                  and "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if pcell is None:
        raise UsageError(f"{path.name} has no cell tagged 'parameters'",
                         hint="tag the first code cell 'parameters' (View → Cell Toolbar → Tags)")
    return Runbook(path.stem, path, title, parse_parameters("".join(pcell.get("source", ""))))


def runbooks() -> dict[str, Runbook]:
    """Every runbook in the notebooks folder, by name."""
    out = {}
    for path in sorted(notebooks_dir().glob("*.ipynb")):
        out[path.stem] = load_runbook(path)
    return out


def defining_cell(path: Path, name: str) -> tuple[int, str] | None:
    """The first code cell of the notebook at ``path`` that assigns ``name`` (its number,
    counting every cell from 1, and the heading of the markdown cell before it), or None."""
    import ast

    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    heading = ""
    for number, cell in enumerate(cells, start=1):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            heading = next((ln.lstrip("# ").strip() for ln in source.splitlines()
                            if ln.strip()), heading)
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name:
                return number, heading
    return None


def get_runbook(name: str) -> Runbook:
    path = notebooks_dir() / f"{name}.ipynb"
    if not _IDENT.match(name.replace("-", "_")) or not path.is_file():
        names = ", ".join(runbooks()) or "(none found)"
        raise UsageError(f"unknown runbook {name!r}; runbooks are: {names}",
                         hint="make list shows each runbook with its parameters")
    return load_runbook(path)


# --------------------------------------------------------------------------- validation
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def coerce(param: Param, raw: Any) -> Any:
    """Convert a command-line string (or an already-typed value) to the parameter's type."""
    t = param.type
    if not isinstance(raw, str):
        ok = (t == "any" or _type_name(raw) == t or (t == "float" and _type_name(raw) == "int"))
        if not ok:
            raise ValueError(f"expected {t}, got {_type_name(raw)}")
        return float(raw) if t == "float" else raw
    if t in ("str", "any"):
        return raw
    if t == "int":
        if not re.fullmatch(r"[+-]?\d+", raw.strip()):
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(raw)
    if t == "float":
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return value
    if t == "bool":
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if t in ("list", "dict"):
        try:
            value = json.loads(raw)
        except ValueError:
            raise ValueError(f"expected a JSON {t}, got {raw!r}") from None
        if _type_name(value) != t:
            raise ValueError(f"expected a JSON {t}, got {raw!r}")
        return value
    raise ValueError(f"unsupported parameter type {t}")


# Bounds of the numeric parameters runbooks share, checked before anything runs:
# name (or suffix) -> (lowest, highest, what it is)
_BOUNDS: dict[str, tuple[float, float, str]] = {
    "probes": (1, 100, "probes"), "max_pages": (1, 1000, "pages"),
    "log_max_pages": (1, 1000, "pages"), "releases_limit": (1, 100, "releases"),
    "port": (1, 65535, "a TCP port"), "count": (0, 1000, "machines"),
    "probe_timeout_s": (0.001, 600, "seconds (a timeout)"), "_s": (0, 86400, "seconds"), "_minutes": (0, 10080, "minutes (Fly keeps ~7 days)"),
    "_h": (0.001, 8760, "hours"), "_days": (0, 3650, "days"), "to_version": (0, 10**9, "a release"),
}
MAX_JSON_DEPTH = 8


def _check_bounds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    rule = _BOUNDS.get(name) or next((b for k, b in _BOUNDS.items()
                                      if k.startswith("_") and name.endswith(k)), None)
    if rule and not rule[0] <= value <= rule[1]:
        raise ValueError(f"{value:g} is out of range: {rule[0]:g} to {rule[1]:g} {rule[2]}")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def validate(runbook: Runbook, given: dict[str, Any]) -> dict[str, Any]:
    """Validate and coerce ``given`` against the runbook's declared parameters.

    Returns the full parameter set (defaults filled in). Raises ``UsageError`` listing the
    valid parameters on any unknown name, non-identifier name, wrong type, or secret.
    """
    values = {p.name: p.default for p in runbook.params}
    problems = []
    for name, raw in given.items():
        if not isinstance(name, str) or not _IDENT.match(name):
            problems.append(f"{name!r} is not a valid parameter name (letters, digits, _)")
            continue
        param = runbook.param(name)
        if param is None:
            problems.append(f"unknown parameter {name!r}")
            continue
        if _SECRET_PARAM.search(name) or (isinstance(raw, str) and looks_secret(raw)):
            problems.append(f"parameter {name!r} looks like a secret; secrets come from "
                            "environment variables only (FLY_API_TOKEN, DATABASE_URL, …)")
            continue
        try:
            values[name] = coerce(param, raw)
            _check_bounds(name, values[name])
            if _depth(values[name]) > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        except ValueError as exc:
            problems.append(f"parameter {name!r}: {exc}")
    if problems:
        raise UsageError("; ".join(problems) + "\n" + runbook.usage(),
                         hint="pass parameters as -p name=value (make: params=\"name=value\")")
    return values


def parse_assignments(items: list[str]) -> dict[str, str]:
    """Parse ``k=v`` strings from ``-p``; a missing '=' is a usage error."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"parameter {item!r} is not of the form name=value")
        name, value = item.split("=", 1)
        out[name.strip()] = value
    return out
