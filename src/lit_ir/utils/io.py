"""Small file helpers shared by every writer."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path` and rename it into place on success.

    A crash mid-write never leaves a half file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(obj, path: str | os.PathLike) -> Path:
    """Atomically write `obj` as indented JSON and return the path."""
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")
    return Path(path)


def replace_dir(new: Path, target: Path) -> None:
    """Rename the folder `new` to `target`; an existing `target` is moved aside first and removed only after."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old)
