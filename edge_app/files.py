"""Atomic file writes: a temp file in the target folder, fsync, rename, fsync the folder.

Modes are set without touching the process umask: `os.umask` can only be read by setting it,
and doing that for every write in a threaded server races (two writers can leave it at 0).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError

TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile.mkstemp's, so leftovers look the same


def atomic_write(path: str | Path, write: Callable[[Path], None], fsync: bool = True) -> Path:
    """Call `write(tmp_path)` and rename the result onto `path`; never leaves a half file.

    A new file gets 0666 less the umask, as `open()` would give it; a replaced file keeps its mode.
    `fsync=False` skips both fsyncs: still never a half file, but a power cut may lose the newest
    files (for frequent, expendable writes such as collected frames: each fsync wears an SD card).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path, new_mode = _create_temp(path)
    except OSError as exc:
        raise EdgeClfError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        write(tmp_path)
        if fsync:
            fd = os.open(tmp_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp_path, _existing_mode(path, new_mode))
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise EdgeClfError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_folder(path.parent)
    return path


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new empty `.<name>.XXXXXXXX.tmp<suffix>` beside `path`, and the mode the kernel gave it.

    Created with 0666 like any new file, so the umask applies as usual and its result can be read
    back with fstat: the umask itself is never set.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = "".join(secrets.choice(TEMP_CHARS) for _ in range(8))
        tmp = path.parent / f".{path.name}.{name}.tmp{path.suffix}"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        try:
            mode = os.fstat(fd).st_mode & 0o777
            if mode & 0o600 != 0o600:  # a umask that hides the file from its owner: still let `write` fill it
                os.fchmod(fd, mode | 0o600)
            return tmp, mode
        finally:
            os.close(fd)
    raise FileExistsError(f"no unused temporary name beside {path}")


def _existing_mode(path: Path, new_mode: int) -> int:
    """The mode of the file being replaced, else `new_mode`."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return new_mode


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort (some filesystems refuse to fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write bytes atomically (`fsync`: see atomic_write)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented, trailing newline) atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
