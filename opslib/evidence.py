"""Evidence files: atomic writes, the SHA-256 manifest, and the verifier.

A run folder ``reports/<incident>/<UTC-timestamp>-<runbook>/`` holds the executed notebook,
its HTML, ``findings.json``, ``parameters.json``, ``timeline.jsonl``, ``run.log``,
``charts/*.png``, ``raw/…`` and ``EVIDENCE_MANIFEST.json``. The manifest lists every other
file (relative ``/`` path, SHA-256, size) and the run's facts. The verifier walks the folder
and reports every missing, extra, modified and unsafe entry in one pass.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import EvidenceError

MANIFEST = "EVIDENCE_MANIFEST.json"
MANIFEST_SCHEMA = 1
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o644, *,
                       durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    Readers see the old file or the whole new one, never a half-written one. ``durable=False``
    skips the fsync, for copies of data that is already safely on disk elsewhere.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def dumps(obj: Any) -> str:
    """The JSON form opslib writes: UTF-8, sorted keys off (documented order), 2-space indent."""
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any, *, durable: bool = True) -> None:
    atomic_write_text(path, dumps(obj), durable=durable)


# --------------------------------------------------------------------------- hashing
def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _rel(path: Path, root: Path) -> str:
    return unicodedata.normalize("NFC", path.relative_to(root).as_posix())


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file and symlink under ``root`` (the manifest excluded), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            if p.parent == root and name == MANIFEST:
                continue
            out.append(p)
        # Symlinked directories are reported as entries, not followed.
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                out.append(Path(dirpath) / d)
                dirnames.remove(d)
    return iter(sorted(out, key=lambda p: _rel(p, root).encode()))


def build_manifest(root: str | os.PathLike, facts: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under ``root`` and return the manifest (not yet written)."""
    root = Path(root)
    files = []
    for p in iter_files(root):
        if p.is_symlink():
            raise EvidenceError(f"refusing to package symlink {p}",
                                hint="evidence folders hold regular files only")
        digest, size = sha256_file(p)
        files.append({"path": _rel(p, root), "sha256": digest, "size": size})
    return {"schema": MANIFEST_SCHEMA, "algorithm": "sha256", "run": facts, "files": files}


def write_manifest(root: str | os.PathLike, facts: dict[str, Any], *,
                   incident_dir: Path | None = None) -> dict[str, Any]:
    """Hash the run, chain it to the incident's last run (``incident_dir``) and sign it with
    the operator's key when there is one (see :mod:`opslib.signing`)."""
    from . import signing

    manifest = build_manifest(root, facts)
    if incident_dir is not None:
        last = signing.previous_manifest(incident_dir)
        manifest["chain"] = {"previous": signing.manifest_digest(last) if last else None}
    key = signing.signing_key()
    if key is not None:
        manifest = signing.sign(manifest, key)
    atomic_write_json(Path(root) / MANIFEST, manifest)
    return manifest


# --------------------------------------------------------------------------- verification
@dataclass
class Problem:
    kind: str  # missing | extra | modified | size_mismatch | unsafe_path | manifest
    path: str
    detail: str = ""
    expected: str | None = None
    found: str | None = None

    def __str__(self) -> str:
        s = f"{self.kind:<13} {self.path}"
        if self.expected or self.found:
            s += f"  expected {self.expected}, found {self.found}"
        if self.detail:
            s += f"  ({self.detail})"
        return s


@dataclass
class RunVerification:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    trust: str = "integrity only"  # signed by <key id>[, trusted] | integrity only
    chained: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def _unsafe(rel: str) -> str | None:
    if not rel or rel.startswith(("/", "~")) or "\\" in rel:
        return "absolute or home-relative path"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "path escapes the run folder"
    if any(ord(c) < 32 for c in rel):
        return "control character in path"
    return None


def verify_run(root: str | os.PathLike) -> RunVerification:
    """Check one run folder against its manifest; collect every problem, never stop early."""
    root = Path(root)
    result = RunVerification(root)
    mpath = root / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        entries = manifest["files"]
        if not isinstance(entries, list):
            raise TypeError("'files' is not a list")
    except FileNotFoundError:
        result.problems.append(Problem("manifest", MANIFEST, "manifest is missing: nothing "
                                       "proves what this run's files were"))
        return result
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        result.problems.append(Problem("manifest", MANIFEST, f"unreadable manifest: {exc}"))
        return result
    schema = manifest.get("schema", 0)
    if not isinstance(schema, int) or isinstance(schema, bool):
        result.problems.append(Problem("manifest", MANIFEST,
                                       f"manifest schema {schema!r} is not a number"))
        return result
    if schema > MANIFEST_SCHEMA:
        result.problems.append(Problem(
            "manifest", MANIFEST,
            f"manifest schema {manifest.get('schema')} is newer than this tool ({MANIFEST_SCHEMA})"))
        return result

    real_root = root.resolve()
    on_disk: dict[str, Path] = {}
    for p in iter_files(root):
        rel = _rel(p, root)
        if rel in on_disk:
            result.problems.append(Problem("unsafe_path", rel,
                                           "two files whose names differ only by normalisation"))
        on_disk[rel] = p
    listed: set[str] = set()
    for entry in entries:
        rel = str(entry.get("path", "")) if isinstance(entry, dict) else ""
        why = _unsafe(rel)
        if why:
            result.problems.append(Problem("unsafe_path", rel or "<empty>", why))
            continue
        rel = unicodedata.normalize("NFC", rel)
        if rel in listed:
            result.problems.append(Problem("manifest", rel, "listed twice"))
            continue
        listed.add(rel)
        p = on_disk.get(rel, root / rel)
        if p.is_symlink() or not p.resolve().is_relative_to(real_root):
            result.problems.append(Problem("unsafe_path", rel, "symlink or path leaving the folder"))
            continue
        if not p.is_file():
            result.problems.append(Problem("missing", rel))
            continue
        digest, size = sha256_file(p)
        result.files_checked += 1
        if digest != entry.get("sha256"):
            result.problems.append(Problem("modified", rel, expected=entry.get("sha256"),
                                           found=digest))
        elif size != entry.get("size"):
            result.problems.append(Problem("size_mismatch", rel, expected=str(entry.get("size")),
                                           found=str(size)))
    for rel, p in on_disk.items():
        if rel not in listed:
            kind = "unsafe_path" if p.is_symlink() else "extra"
            result.problems.append(Problem(kind, rel, "not in the manifest"))
    _check_trust(manifest, result)
    return result


def _check_trust(manifest: dict[str, Any], result: RunVerification) -> None:
    from . import signing

    result.chained = isinstance(manifest.get("chain"), dict)
    level, detail = signing.check_signature(manifest)
    if level == "bad signature":
        result.problems.append(Problem("signature", MANIFEST, detail))
        result.trust = "bad signature"
        return
    trusted = signing.trusted_keys()
    if level == "integrity only" and trusted:
        result.problems.append(Problem("signature", MANIFEST,
                                       f"unsigned, while ${signing.TRUSTED_ENV} says runs are "
                                       "signed: anyone could have written this manifest"))
    if level == "signed":
        result.trust = f"signed by {detail}" + (", trusted" if detail in trusted else "")
        if trusted and detail not in trusted:
            result.problems.append(Problem("signature", MANIFEST,
                                           f"signed by {detail}, which is not a trusted key "
                                           f"(${signing.TRUSTED_ENV})"))


def find_runs(path: str | os.PathLike) -> list[Path]:
    """Run folders at or under ``path`` (a run, an incident, or a whole reports/ tree).

    Folders whose name starts with '.' (staging, interactive scratch) are not evidence.
    """
    path = Path(path)
    if (path / MANIFEST).exists() or (path / MANIFEST).is_symlink():
        return [path]
    runs = []
    for dirpath, dirnames, filenames in os.walk(path):
        # hidden folders (staging, scratch) and ours (_review, the site) are not evidence
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        if MANIFEST in filenames or MANIFEST in dirnames:
            runs.append(Path(dirpath))
            dirnames[:] = []
        elif _looks_like_run(Path(dirpath), filenames, dirnames):
            runs.append(Path(dirpath))  # a run whose manifest was deleted: still reported
            dirnames[:] = []
    return runs


_RUN_NAME = re.compile(r"^\d{8}T\d{6}Z-[a-z0-9-]+$")
_EVIDENCE_FILES = {"findings.json", "parameters.json", "run.log", "timeline.jsonl"}


def _looks_like_run(path: Path, filenames: list[str], dirnames: list[str] = ()) -> bool:
    """A folder with any file a run leaves, or a run-shaped name: without a valid manifest
    it is a failure to report, never a folder to skip."""
    return (bool(_EVIDENCE_FILES & set(filenames)) or bool(_RUN_NAME.match(path.name))
            or any(f.endswith((".ipynb", ".html")) for f in filenames) and "raw" in dirnames)


def verify_tree(path: str | os.PathLike) -> list[RunVerification]:
    path = Path(path)
    if not path.exists():
        raise EvidenceError(f"no such evidence path: {path}",
                            hint="give a run folder, an incident folder or reports/")
    if not path.is_dir():
        raise EvidenceError(f"{path} is a file, not a run: verify takes a folder",
                            hint="give a run folder, an incident folder or reports/")
    from .signing import check_chain

    results = [_verify_one(p) for p in find_runs(path)]
    by_incident: dict[Path, list[RunVerification]] = {}
    for r in results:
        by_incident.setdefault(r.path.parent, []).append(r)
    for incident, runs in by_incident.items():
        # the chain is judged over the whole incident, even when one run was asked for
        siblings = ([p for p in incident.iterdir() if (p / MANIFEST).is_file()]
                    if len(runs) == 1 else [r.path for r in runs])
        broken = check_chain(siblings)
        for r in runs:
            if r.path in broken:
                r.problems.append(Problem("chain", MANIFEST, broken[r.path]))
    return results


def _verify_one(run: Path) -> RunVerification:
    """One run's problems; whatever is wrong with it, the rest of the tree is still checked."""
    try:
        return verify_run(run)
    except Exception as exc:  # a damaged run is that run's problem
        result = RunVerification(run)
        result.problems.append(Problem("manifest", MANIFEST, f"could not be verified: {exc}"))
        return result

