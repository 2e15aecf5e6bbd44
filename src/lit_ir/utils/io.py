"""Small file helpers shared by every writer: atomic files and folders that survive crashes and power loss.

Temporary files and folders are created with the modes an ordinary `open()` / `mkdir()` gives (0666 / 0777 less
the umask), not tempfile's private 0600 / 0700, so a shared cache or results folder stays readable by the team.
Everything is fsynced before it is renamed into place, so a power loss cannot leave a renamed but empty file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterator

_ATTEMPTS = 100  # random names tried before giving up (a clash is already unlikely at 32 random bits)


def _temp_name(parent: Path, prefix: str, suffix: str) -> Path:
    return parent / f"{prefix}{secrets.token_hex(4)}{suffix}"


def create_temp_file(parent: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new file in `parent` opened for writing: (fd, path), mode 0666 less the umask (as `open()` gives)."""
    for _ in range(_ATTEMPTS):
        path = _temp_name(parent, prefix, suffix)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {prefix}*{suffix} in {parent}")


def make_temp_dir(parent: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> Path:
    """A new folder in `parent`, mode 0777 less the umask (as `mkdir` gives)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_ATTEMPTS):
        path = _temp_name(parent, prefix, suffix)
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {prefix}*{suffix} in {parent}")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (a file created or renamed in it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask alone must set it to read it,
    which races with other threads creating files)."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_modes(path: str | os.PathLike) -> None:
    """Give every file and folder under `path` the mode `open()` / `mkdir()` would (0666 / 0777 less the umask).

    For freshly written folders only: some libraries (safetensors) create their files private (0600) whatever the
    umask, which would make an exported model unreadable to the rest of the team.
    """
    mask = current_umask()
    for root, dirs, files in os.walk(path):
        for name in files:
            file = os.path.join(root, name)
            if not os.path.islink(file):
                os.chmod(file, 0o666 & ~mask)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
    os.chmod(path, 0o777 & ~mask)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file and folder under `path` (and `path` itself), the folders after their contents."""
    for root, _, files in os.walk(path, topdown=False):
        for name in files:
            file = os.path.join(root, name)
            if os.path.islink(file):
                continue
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path`, fsync it and rename it into place on success.

    A crash mid-write never leaves a half file under the final name, nor a power loss an empty one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp_file(path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json(obj, path: str | os.PathLike) -> Path:
    """Atomically write `obj` as indented JSON and return the path."""
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")
    return Path(path)


def publish_dir(path: str | os.PathLike) -> None:
    """Make a freshly written folder ready to be renamed into place: ordinary modes, everything fsynced."""
    ordinary_modes(path)
    fsync_tree(path)


def replace_dir(new: Path, target: Path) -> None:
    """Publish the folder `new` (`publish_dir`) and rename it to `target`; an existing `target` is moved aside
    first and removed only after."""
    new, target = Path(new), Path(target)
    publish_dir(new)
    if not target.exists():
        os.replace(new, target)
    else:
        old = make_temp_dir(target.parent, prefix=f".{target.name}.", suffix=".old")
        os.replace(target, old / target.name)
        os.replace(new, target)
        shutil.rmtree(old)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temporary folder beside `path` (the yielded path); on success it replaces `path` (`replace_dir`),
    on an error it is removed. So `path` is always either the old folder, whole, or the new one, whole."""
    path = Path(path)
    staging = make_temp_dir(path.parent, prefix=f".{path.name}.")
    try:
        yield staging
        replace_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
