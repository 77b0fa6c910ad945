"""Writing a set of files into a folder that may also hold the user's files.

A command that writes several files into one folder (``export --web DIR``) builds them in a
staging folder inside DIR, then moves each into place with ``os.replace`` (atomic on one file
system) and records what it wrote, with each file's sha256, in a manifest in DIR. A later run
replaces only files that manifest lists AND that still hold the content it recorded; anything
else at a path it needs (a user's file, an edited file, a folder, a symlink) stops it before
anything is written, with one line. Files an earlier run wrote that the new one does not write
are removed only when unchanged. While files are being moved the manifest accepts both the old
and the new content of each path, so an interrupted run can be rerun with ``--overwrite``.

    manifest  {"format": FORMAT, "files": {"relative/posix/path": ["sha256", ...]}}
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path, PurePosixPath

from ..errors import UserError

FORMAT = "infinitygan-owned-files"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _safe_relative(name) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and all(part not in ("", ".", "..") for part in p.parts) and str(p) == name


def read_manifest(root: Path, manifest: str) -> dict[str, list[str]]:
    """The files an earlier run recorded in ``root/manifest`` ({} when there is none).
    UserError when the manifest is not one this module wrote."""
    path = root / manifest
    if not os.path.lexists(path):
        return {}
    bad = UserError(f"{path} is not the manifest of an earlier export (remove it, or pick another folder)")
    if path.is_symlink() or not path.is_file():
        raise bad
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise bad from None
    files = data.get("files") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(files, dict) or not all(
            _safe_relative(k) and isinstance(v, list) and v and all(isinstance(h, str) for h in v)
            for k, v in files.items()):
        raise bad
    return files


def _kind(path: Path) -> str | None:
    """'file', 'dir', 'other' (symlink, FIFO, device...) or None (absent), without following links."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"


def _ours(root: Path, name: str, owned: dict[str, list[str]]) -> bool:
    """``root/name`` is a regular file (reached through real folders) that an earlier run wrote, unchanged."""
    parts = PurePosixPath(name).parts
    for i in range(1, len(parts)):
        if _kind(root.joinpath(*parts[:i])) != "dir":
            return False
    path = root.joinpath(*parts)
    return name in owned and _kind(path) == "file" and sha256(path) in owned[name]


def check_writable(root: Path, names, owned: dict[str, list[str]], manifest: str) -> None:
    """UserError (one line) when a path of ``names`` (or a folder on its way) is taken by
    something an earlier run did not write: nothing is written then."""
    for name in [*names, manifest]:
        parts = PurePosixPath(name).parts
        for i in range(1, len(parts)):
            sub = root.joinpath(*parts[:i])
            if _kind(sub) not in (None, "dir"):
                raise UserError(f"{sub} is in the way (not a folder an earlier export made): "
                                "remove it, or pick another folder")
        path = root.joinpath(*parts)
        kind = _kind(path)
        if kind is None or name == manifest and kind == "file":
            continue
        if not _ours(root, name, owned):
            what = "was changed since an earlier export wrote it" if name in owned and kind == "file" \
                else "was not written by an earlier export"
            raise UserError(f"{path} {what}: not replacing it (remove it, or pick another folder)")


@contextlib.contextmanager
def staging(root: Path):
    """A fresh hidden folder inside ``root`` (same file system, so moves out of it are atomic),
    removed afterwards whatever happens."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".infinitygan-staging-", dir=root))
    except OSError as e:
        raise UserError(f"cannot write to {root}: {e.strerror or e}") from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def staged_files(staging_dir: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file under ``staging_dir``."""
    return {p.relative_to(staging_dir).as_posix(): sha256(p)
            for p in sorted(staging_dir.rglob("*")) if p.is_file()}


def _write_manifest(root: Path, manifest: str, files: dict[str, list[str]]) -> None:
    tmp = root / f"{manifest}.tmp"
    tmp.write_text(json.dumps({"format": FORMAT, "files": files}, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, root / manifest)


def install(root: Path, staging_dir: Path, manifest: str) -> dict[str, str]:
    """Move every file of ``staging_dir`` to the same place under ``root``, replacing only files
    an earlier run wrote (checked first: UserError and nothing moved otherwise), remove that run's
    unchanged files the new set lacks, and record the new set. Returns {path: sha256}."""
    old = read_manifest(root, manifest)
    new = staged_files(staging_dir)
    check_writable(root, new, old, manifest)
    try:
        _write_manifest(root, manifest, {k: sorted(set(old.get(k, [])) | ({new[k]} if k in new else set()))
                                         for k in old.keys() | new.keys()})
        for name in new:
            dst = root / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging_dir / name, dst)
        for name in old.keys() - new.keys():
            if _ours(root, name, old):
                (root / name).unlink()
        _write_manifest(root, manifest, {k: [v] for k, v in new.items()})
    except OSError as e:
        raise UserError(f"cannot write to {root}: {e.strerror or e}") from None
    return new
