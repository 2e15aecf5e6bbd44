"""Finished model exports: folders written whole, with a manifest of their files.

An export is filled in a temporary folder beside its final name, fsynced and renamed (`lit_ir.utils.io.atomic_dir`),
so a run killed while exporting leaves the previous export (or nothing), never half a model. Its last file,
`lit_ir_export.json`, names the kind of model and every file written: a loader that finds the manifest checks them
all, so a folder copied in part (say, without its `score_head.pt`) fails to load, naming what is missing, instead
of loading with a new random head or default settings. A folder without a manifest is a plain Hugging Face model.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lit_ir.errors import InputError
from lit_ir.utils.io import atomic_dir, write_json

EXPORT_FILE = "lit_ir_export.json"
FORMAT = "lit_ir.export/1"


@contextlib.contextmanager
def export_folder(path: str | os.PathLike, kind: str) -> Iterator[Path]:
    """Yield a temporary folder to write a `kind` model into; on success it becomes `path` with its manifest."""
    with atomic_dir(path) as staging:
        yield staging
        files = sorted(file.relative_to(staging).as_posix() for file in staging.rglob("*") if file.is_file())
        write_json({"format": FORMAT, "kind": kind, "files": files}, staging / EXPORT_FILE)


def read_export(path: str | os.PathLike, may_lack: tuple[str, ...] = ()) -> dict | None:
    """The manifest of the lit_ir export at `path` (None for any other folder), once every file it lists is
    there; InputError naming the missing ones otherwise. `may_lack`: files the caller can do without."""
    path = Path(path)
    manifest_path = path / EXPORT_FILE
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise InputError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    missing = [name for name in manifest["files"] if name not in may_lack and not (path / name).is_file()]
    if missing:
        raise InputError(f"{path}: an incomplete lit_ir {manifest['kind']} export, {len(missing)} of its files are "
                         f"missing: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}. It was copied "
                         f"in part or damaged: copy the whole folder, or export the model again")
    return manifest


def starts_new_head(path: str | os.PathLike, head_file: str, new_head: bool = False) -> bool:
    """Whether a model loading from `path` starts a new, random head instead of loading `head_file`.

    Normal for a plain model, or an export that never had such a head (a coarse-tuned model for a cross-encoder);
    an error for an export that was written with it, unless `new_head` asks for a new head anyway. Every other
    file of an export must be there (`read_export`).
    """
    manifest = read_export(path, may_lack=(head_file,))
    present = (Path(path) / head_file).is_file()
    if not present and not new_head and manifest is not None and head_file in manifest["files"]:
        raise InputError(f"{path}: an incomplete lit_ir {manifest['kind']} export: its {head_file} is missing "
                         f"(copied in part?). Copy the whole folder, or pass new_head=True (model.new_head=true) "
                         f"to start a new, random head on its weights")
    return new_head or not present
