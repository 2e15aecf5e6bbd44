"""Precomputed document embeddings: a raw memmap plus the ids of its rows and a JSON sidecar.

A finished store is a folder:

    <path>/embeddings.bin   count x dim, float16 or float32, row-major, no header (np.memmap)
    <path>/ids.txt          one doc id per line: the id of each row
    <path>/store.json       format, count, dim, dtype, the encoder's fingerprint (see BiEncoder.fingerprint), and
                            how many documents were cut to the encoder's doc_max_length

`EmbeddingStoreWriter` fills `<path>.partial/` instead and renames it to `<path>` only once every row is written,
so a crash never leaves a half store under the final name. Each writer (one per DDP rank) fills a contiguous slice of
rows and records the rows it has written in its own progress file after each chunk, the embeddings flushed to disk
first; a new writer on the same `.partial` folder skips those rows. The embedding file is preallocated at its full
size (sparse), so ranks write into the same file without coordination.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lit_ir.errors import InputError, check_doc_ids, some_ids
from lit_ir.utils import hashing
from lit_ir.utils.io import fsync_tree, make_temp_dir, replace_dir, write_json

log = logging.getLogger(__name__)

FORMAT = "lit_ir.embeddings/1"
SIDECAR_FILE = "store.json"
PLAN_FILE = "plan.json"  # the sidecar-to-be of an unfinished store; never read as a finished one
IDS_FILE = "ids.txt"
EMBEDDINGS_FILE = "embeddings.bin"
PARTIAL_SUFFIX = ".partial"
DTYPES = ("float16", "float32")
# fields of a fingerprint that decide whether stored embeddings fit an encoder ("model" is only a name: two names
# can be the same weights, e.g. an alias and its folder, so it counts only when a weights hash is missing)
COMPATIBILITY_FIELDS = ("weights_sha", "dim", "pooling", "similarity", "doc_max_length", "doc_token_type")
# what a field meant in stores written before it was recorded (documents were encoded as segment 0)
FIELD_DEFAULTS = {"doc_token_type": 0}
GPU_HEADROOM = 0.9  # use at most this share of the free GPU memory for the matrix; the rest is for the model


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def ids_digest(ids: Sequence[str]) -> str:
    """Order-sensitive hash of row ids: two stores (or a store and a candidate file) refer to the same rows."""
    return hashing.fingerprint(ids)


def compatibility_problems(stored: dict, wanted: dict) -> list[str]:
    """Human-readable differences between two fingerprints on the fields that matter (see COMPATIBILITY_FIELDS).

    Only fields present in both are compared, so a partial fingerprint ({"dim": 768}) checks just that; a field of
    FIELD_DEFAULTS that an older store lacks counts as its default.
    """
    fields = list(COMPATIBILITY_FIELDS)
    if "weights_sha" not in stored or "weights_sha" not in wanted:
        fields.insert(0, "model")
    stored = {**FIELD_DEFAULTS, **stored}
    problems = [f"{field}: store has {stored[field]!r}, expected {wanted[field]!r}"
                for field in fields if field in stored and field in wanted and stored[field] != wanted[field]]
    if problems and stored.get("model") != wanted.get("model") and "model" not in fields:
        problems.insert(0, f"model: store made by {stored.get('model')!r}, expected {wanted.get('model')!r}")
    return problems


class EmbeddingStore:
    """The read side of a finished store. `embeddings` is a read-only memmap: opening costs nothing until rows
    are read, so an 8.8M x 768 store opens instantly and `rows`/`embeddings[rows]` gather only what is needed."""

    def __init__(self, path: Path, ids: list[str], embeddings: np.memmap, sidecar: dict):
        self.path = path
        self.ids = ids
        self.embeddings = embeddings
        self.dim = int(sidecar["dim"])
        self.dtype = np.dtype(sidecar["dtype"])
        self.fingerprint: dict = dict(sidecar.get("fingerprint", {}))
        self.meta = {**self.fingerprint, "count": len(ids), "dim": self.dim, "dtype": self.dtype.name,
                     "ids_digest": sidecar.get("ids_digest"), "truncated_documents": sidecar.get("truncated_documents")}
        self._row_of: dict[str, int] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "EmbeddingStore":
        """Open a finished store; InputError (naming the file) when it is unfinished, missing or inconsistent."""
        path = Path(path)
        if path.name.endswith(PARTIAL_SUFFIX) or (path / PLAN_FILE).is_file():
            raise InputError(f"{path}: an unfinished embedding store (still being written or crashed); "
                             f"rerun the encoding to resume it")
        sidecar_path = path / SIDECAR_FILE
        if not sidecar_path.is_file():
            partial = partial_path(path)
            if partial.is_dir():
                done = _rows_done(partial)
                raise InputError(f"{path}: the embedding store is unfinished ({done} rows written in {partial}); "
                                 f"rerun the encoding to resume it")
        sidecar = read_sidecar(path, SIDECAR_FILE, FORMAT, "an embedding store")
        count, dim = int(sidecar["count"]), int(sidecar["dim"])
        embeddings = open_matrix(path / EMBEDDINGS_FILE, sidecar["dtype"], (count, dim), sidecar_path)
        ids = read_ids(path / IDS_FILE, count, sidecar_path)
        return cls(path, ids, embeddings, sidecar)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, {len(self)} x {self.dim} {self.dtype.name})"

    @property
    def row_of(self) -> dict[str, int]:
        """doc id -> row, built on first use (a few seconds for millions of ids)."""
        if self._row_of is None:
            self._row_of = {doc_id: row for row, doc_id in enumerate(self.ids)}
        return self._row_of

    def rows(self, doc_ids: Sequence[str]) -> np.ndarray:
        """int64 row indices of `doc_ids`; InputError naming the ids this store does not have."""
        row_of = self.row_of
        try:
            return np.fromiter((row_of[doc_id] for doc_id in doc_ids), dtype=np.int64, count=len(doc_ids))
        except KeyError:
            missing = [doc_id for doc_id in doc_ids if doc_id not in row_of]
            raise InputError(f"{self.path}: {len(missing)} document ids are not in the embedding store: "
                             f"{some_ids(missing)}") from None

    def check_compatible(self, fingerprint: dict) -> None:
        """InputError naming every field where the store's encoder differs from `fingerprint` (the encoder that
        will score against these embeddings), e.g. another model or dimension."""
        problems = compatibility_problems(self.fingerprint, fingerprint)
        if problems:
            raise InputError(f"{self.path}: the embedding store does not fit the encoder: " + "; ".join(problems)
                             + ". Re-encode the documents with this encoder (python -m lit_ir.encode).")

    def to_tensor(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        """The whole matrix as one tensor, where gathering candidate rows is fastest.

        On a CUDA device: in GPU memory when it fits in the free memory (with headroom for the model), so
        gathering a batch's candidates is an index into device memory. When it does not fit: pinned CPU memory,
        from which gathered rows reach the GPU by fast (and with non_blocking=True, asynchronous) copies.
        On the CPU: plain memory (a copy, not the memmap, so random gathers never wait on the disk).
        """
        device = torch.device(device)
        dtype = dtype or _torch_dtype(self.dtype)
        nbytes = len(self) * self.dim * torch.empty((), dtype=dtype).element_size()
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if nbytes <= GPU_HEADROOM * free:
                return self._copy_into(torch.empty((len(self), self.dim), dtype=dtype, device=device))
            log.warning("%s: %.1f GB of embeddings do not fit in %.1f GB of free GPU memory; keeping them in "
                        "pinned CPU memory", self.path, nbytes / 1e9, free / 1e9)
            return self._copy_into(torch.empty((len(self), self.dim), dtype=dtype, pin_memory=True))
        return self._copy_into(torch.empty((len(self), self.dim), dtype=dtype, device=device))

    def _copy_into(self, target: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
        # chunk by chunk: never a second full-size copy in host memory on the way to the GPU
        for start in range(0, len(self), chunk):
            block = torch.from_numpy(np.ascontiguousarray(self.embeddings[start : start + chunk]))
            target[start : start + len(block)].copy_(block)
        return target


def read_sidecar(folder: Path, name: str, fmt: str, what: str) -> dict:
    """The JSON sidecar `folder/name`; InputError when it is missing or of another format."""
    path = folder / name
    if not path.is_file():
        raise InputError(f"{folder}: not {what} ({name} is missing)")
    sidecar = json.loads(path.read_text(encoding="utf-8"))
    if sidecar.get("format") != fmt:
        raise InputError(f"{path}: format {sidecar.get('format')!r}, expected {fmt!r}")
    return sidecar


def open_matrix(file: Path, dtype, shape: tuple[int, int], sidecar_path: Path) -> np.memmap:
    """A read-only memmap of `shape`; InputError when the file's size is not what the sidecar says (a crash or a
    copy cut short would otherwise read as zeros or fail deep inside training)."""
    dtype = np.dtype(dtype)
    expected = shape[0] * shape[1] * dtype.itemsize
    actual = file.stat().st_size if file.is_file() else None
    if actual != expected:
        raise InputError(f"{file}: {actual if actual is not None else 'no'} bytes, but {sidecar_path} says "
                         f"{shape[0]} x {shape[1]} {dtype.name} = {expected} bytes (truncated or replaced file?)")
    return np.memmap(file, dtype=dtype, mode="r", shape=shape)


def read_ids(file: Path, count: int, sidecar_path: Path) -> list[str]:
    """One id per line; InputError unless there are `count` of them."""
    ids = file.read_text(encoding="utf-8").splitlines() if file.is_file() else []
    if len(ids) != count:
        raise InputError(f"{file}: {len(ids)} ids, but {sidecar_path} says {count} rows")
    return ids


class EmbeddingStoreWriter:
    """Fills `<path>.partial/` with the embeddings of `ids`, resumably; `finalize()` makes it `<path>`.

    `rows=(start, end)` is the slice this writer fills (one DDP rank's shard); the default is every row. Several
    writers (processes) may work on the same store at once, each on its own slice; any of them may create the
    partial folder (creation is atomic). A partial folder left by a crash is resumed when it was planned for the
    same ids, dimension, dtype and fingerprint; otherwise InputError. `overwrite=True` replaces a finished store
    at `path` (when the new one is finished) and discards a partial folder planned differently. Under DDP, create
    the first rank's writer, then the others after a barrier: they find the partial folder made for their plan.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        ids: Sequence[str],
        dim: int,
        fingerprint: dict | None = None,
        dtype: str = "float16",
        rows: tuple[int, int] | None = None,
        overwrite: bool = False,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.path, self.partial = Path(path), partial_path(path)
        self.ids, self.dim, self.dtype = list(ids), int(dim), np.dtype(dtype)
        self.rows = (0, len(self.ids)) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= self.rows[0] <= self.rows[1] <= len(self.ids):
            raise ValueError(f"rows {self.rows} are outside 0..{len(self.ids)}")
        self.plan = {"format": FORMAT, "count": len(self.ids), "dim": self.dim, "dtype": self.dtype.name,
                     "ids_digest": ids_digest(self.ids), "fingerprint": dict(fingerprint or {})}
        if (self.path / SIDECAR_FILE).is_file():
            if not overwrite:
                raise InputError(f"{self.path}: a finished embedding store is already there; delete it or pass "
                                 f"overwrite=True to re-encode")
        self._open_partial(overwrite)
        self._progress_file = self.partial / f"progress-{self.rows[0]}-{self.rows[1]}.json"
        self._done = _merge(_read_progress(self._progress_file))
        self._truncated = _read_truncated(self._progress_file)  # documents cut to the encoder's length, so far
        self._fd = os.open(self.partial / EMBEDDINGS_FILE, os.O_RDWR)

    def _open_partial(self, overwrite: bool) -> None:
        if self.partial.is_dir() and overwrite and self._plan_differences():
            shutil.rmtree(self.partial)  # work for another plan is useless; one for this plan is resumed
        if not self.partial.is_dir():
            _check_ids(self.ids)
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            staging = make_temp_dir(self.partial.parent, prefix=f".{self.partial.name}.")
            try:
                (staging / IDS_FILE).write_text("".join(f"{doc_id}\n" for doc_id in self.ids), encoding="utf-8")
                with open(staging / EMBEDDINGS_FILE, "wb") as handle:  # sparse: costs no disk until written
                    handle.truncate(len(self.ids) * self.dim * self.dtype.itemsize)
                write_json(self.plan, staging / PLAN_FILE)
                fsync_tree(staging)
                with contextlib.suppress(OSError):  # another rank created it first: use theirs (checked below)
                    os.rename(staging, self.partial)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if differences := self._plan_differences():
            raise InputError(f"{self.partial}: an unfinished store planned differently ({'; '.join(differences)}); "
                             f"delete it or pass overwrite=True to start again")

    def _plan_differences(self) -> list[str]:
        plan_file = self.partial / PLAN_FILE
        plan = json.loads(plan_file.read_text(encoding="utf-8")) if plan_file.is_file() else {}
        return [f"{key}: {plan.get(key)!r} there, {value!r} now" for key, value in self.plan.items()
                if plan.get(key) != value]

    def pending(self) -> list[tuple[int, int]]:
        """Row ranges of this writer's slice not written yet, in order (all of it for a fresh store)."""
        return _subtract([self.rows], _merge(self._done + _all_progress(self.partial)))

    @property
    def rows_done(self) -> int:
        return self.rows[1] - self.rows[0] - sum(end - start for start, end in self.pending())

    def write(self, start: int, embeddings: np.ndarray | torch.Tensor, truncated: int = 0) -> None:
        """Write rows start..start+len(embeddings) and record them as done: data reaches the disk (fsync) before
        the progress file says so, so a resumed run never trusts rows that were lost in a crash. `truncated`:
        how many of these documents were cut to the encoder's length (summed into the finished store's sidecar)."""
        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().float().cpu().numpy()
        embeddings = np.ascontiguousarray(embeddings, dtype=self.dtype)
        end = start + len(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape [n, {self.dim}], got {list(embeddings.shape)}")
        if not self.rows[0] <= start <= end <= self.rows[1]:
            raise ValueError(f"rows {start}..{end} are outside this writer's slice {self.rows}")
        row_bytes = self.dim * self.dtype.itemsize
        os.pwrite(self._fd, embeddings.tobytes(), start * row_bytes)
        os.fsync(self._fd)
        self._done = _merge(self._done + [(start, end)])
        self._truncated += truncated
        write_json({"rows": list(self.rows), "done": [list(r) for r in self._done], "truncated": self._truncated},
                   self._progress_file)

    def finalize(self) -> EmbeddingStore:
        """Check that every row of the store (all slices) is written, then publish it under the final name.

        Under DDP call it on one rank, after a barrier: it needs the other writers' progress.
        """
        self.close()
        missing = _subtract([(0, len(self.ids))], _all_progress(self.partial))
        if missing:
            raise InputError(f"{self.partial}: cannot finalise, rows not written yet: {missing[:5]}"
                             + (" ..." if len(missing) > 5 else ""))
        truncated = sum(_read_truncated(progress) for progress in self.partial.glob("progress-*.json"))
        write_json({**self.plan, "truncated_documents": truncated}, self.partial / SIDECAR_FILE)
        for progress in self.partial.glob("progress-*.json"):
            progress.unlink()
        (self.partial / PLAN_FILE).unlink()
        replace_dir(self.partial, self.path)  # overwrite=True: the old store is removed once the new one is in place
        log.info("finished the embedding store %s (%d x %d %s)", self.path, len(self.ids), self.dim, self.dtype.name)
        return EmbeddingStore.open(self.path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return {"float16": torch.float16, "float32": torch.float32}[np.dtype(dtype).name]


def _check_ids(ids: list[str]) -> None:
    check_doc_ids(ids, "an embedding store")
    bad = [doc_id for doc_id in ids if not doc_id or "\n" in doc_id or "\r" in doc_id]
    if bad:  # one id per line in ids.txt
        raise InputError(f"{len(bad)} doc ids are empty or contain a line break: {some_ids(bad)}")


def _read_progress(path: Path) -> list[tuple[int, int]]:
    if not path.is_file():
        return []
    return [(int(start), int(end)) for start, end in json.loads(path.read_text(encoding="utf-8"))["done"]]


def _read_truncated(path: Path) -> int:
    return int(json.loads(path.read_text(encoding="utf-8")).get("truncated", 0)) if path.is_file() else 0


def _all_progress(partial: Path) -> list[tuple[int, int]]:
    return _merge([r for path in partial.glob("progress-*.json") for r in _read_progress(path)])


def _rows_done(partial: Path) -> int:
    return sum(end - start for start, end in _all_progress(partial))


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping half-open ranges covering the same rows."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def _subtract(ranges: list[tuple[int, int]], done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `ranges` not covered by `done` (both merged)."""
    left = []
    for start, end in ranges:
        cursor = start
        for done_start, done_end in done:
            if done_end <= cursor or done_start >= end:
                continue
            if done_start > cursor:
                left.append((cursor, done_start))
            cursor = max(cursor, done_end)
        if cursor < end:
            left.append((cursor, end))
    return left
