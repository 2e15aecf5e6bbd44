"""File modes and durability of everything lit_ir writes: atomic files, stores and model folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from lit_ir.data.candidates import CandidateStore
from lit_ir.data.embedding_store import EmbeddingStoreWriter
from lit_ir.data.trec import write_run
from lit_ir.models.hub import build_random_bert
from lit_ir.retrieval.bm25 import BM25Index
from lit_ir.utils.io import atomic_dir, atomic_write, write_json

FINGERPRINT = {"model": "m", "dim": 4, "weights_sha": "abc"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    previous = os.umask(0o022)
    try:
        yield lambda value: os.umask(value)
    finally:
        os.umask(previous)


def write_embedding_store(path: Path) -> EmbeddingStoreWriter:
    writer = EmbeddingStoreWriter(path, ["d1", "d2"], dim=4, fingerprint=FINGERPRINT, dtype="float32")
    writer.write(0, np.ones((2, 4), dtype=np.float32))
    return writer


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                             (0o002, 0o664, 0o775)])
def test_written_files_and_stores_honour_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert mode(write_json({"a": 1}, tmp_path / "a.json")) == file_mode
    assert mode(write_run({"q1": {"d1": 1.0}}, tmp_path / "run.trec")) == file_mode
    with atomic_write(tmp_path / "b.bin", "wb") as handle:
        handle.write(b"x")
    assert mode(tmp_path / "b.bin") == file_mode

    index = BM25Index.save(BM25Index.build(["d1", "d2"], ["apple pie", "banana"]), tmp_path / "bm25")
    store = write_embedding_store(tmp_path / "store").finalize()
    candidates = CandidateStore.from_run({"q1": {"d1": 1.0}}, store, 1, tmp_path / "candidates")
    model = build_random_bert(tmp_path / "models", hidden=16, layers=1, vocab_texts=["apple pie"])
    for folder in (index, store.path, candidates.path, model):
        assert mode(folder) == dir_mode, folder
        for file in folder.rglob("*"):
            assert mode(file) == (dir_mode if file.is_dir() else file_mode), file


@pytest.fixture
def renames(monkeypatch):
    """Every os.replace / os.rename, with the files and folders under its source that were not fsynced before."""
    synced: set[str] = set()
    done: list[tuple[Path, list[str]]] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        synced.add(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def check(real):
        def rename(src, dst, *args, **kwargs):
            src = Path(src)
            entries = [src, *src.rglob("*")] if src.is_dir() else [src]
            done.append((Path(dst), [str(e) for e in entries if os.path.realpath(e) not in synced]))
            return real(src, dst, *args, **kwargs)
        return rename

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", check(real_replace))
    monkeypatch.setattr(os, "rename", check(real_rename))
    return done


def unsynced_at(renames, target: Path) -> list[str]:
    found = [unsynced for dst, unsynced in renames if dst == target]
    assert found, f"nothing was renamed to {target}"
    return [name for unsynced in found for name in unsynced]


def test_files_stores_and_folders_are_fsynced_before_their_rename(tmp_path, renames):
    write_json({"a": 1}, tmp_path / "a.json")
    assert unsynced_at(renames, tmp_path / "a.json") == []
    BM25Index.save(BM25Index.build(["d1", "d2"], ["apple pie", "banana"]), tmp_path / "bm25")
    assert unsynced_at(renames, tmp_path / "bm25") == []
    writer = write_embedding_store(tmp_path / "store")
    assert unsynced_at(renames, tmp_path / "store.partial") == []
    store = writer.finalize()
    assert unsynced_at(renames, tmp_path / "store") == []
    CandidateStore.from_run({"q1": {"d1": 1.0}}, store, 1, tmp_path / "candidates")
    assert unsynced_at(renames, tmp_path / "candidates") == []
    build_random_bert(tmp_path / "models", hidden=16, layers=1)
    model = next((tmp_path / "models").glob("random-bert-*"))
    assert unsynced_at(renames, model) == []


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "a.txt").write_text("new, half written")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind
    with atomic_dir(target) as staging:
        (staging / "b.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["b.txt"]


def test_model_exports_are_fsynced_before_their_rename(tmp_path, renames, umask):
    from lit_ir.modules.cross_encoder import CrossEncoderModule

    model = build_random_bert(tmp_path / "models", hidden=16, layers=1, vocab_texts=["apple pie"])
    module = CrossEncoderModule(str(model))
    module.configure_model()
    path = module.export(tmp_path / "export")
    assert unsynced_at(renames, path) == []
    assert mode(path / "model.safetensors") == 0o644  # readable by the team, though safetensors writes 0600
