"""Embedding store (round trip, resume, refusals) and candidate store (from a run, errors)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from lit_ir.data.candidates import CandidateStore
from lit_ir.data.embedding_store import EmbeddingStore, EmbeddingStoreWriter, partial_path
from lit_ir.errors import InputError

IDS = [f"d{i}" for i in range(10)]
FINGERPRINT = {"model": "m", "pooling": "cls", "similarity": "dot", "doc_max_length": 16, "dim": 4,
               "weights_sha": "abc"}


def vectors(n=len(IDS), dim=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def write_store(path, data=None, dtype="float32", chunk=3):
    data = vectors() if data is None else data
    writer = EmbeddingStoreWriter(path, IDS, dim=data.shape[1], fingerprint=FINGERPRINT, dtype=dtype)
    for start, end in writer.pending():
        for at in range(start, end, chunk):
            writer.write(at, data[at : min(at + chunk, end)])
    return writer.finalize()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip(tmp_path, dtype):
    data = vectors()
    store = write_store(tmp_path / "store", data, dtype)
    assert not partial_path(tmp_path / "store").exists()
    store = EmbeddingStore.open(tmp_path / "store")
    assert store.ids == IDS and len(store) == 10 and store.dim == 4 and store.dtype == np.dtype(dtype)
    expected = data.astype(dtype)
    np.testing.assert_array_equal(store.embeddings, expected)
    assert store.meta["count"] == 10 and store.meta["model"] == "m" and store.fingerprint == FINGERPRINT
    assert store.rows(["d3", "d0"]).tolist() == [3, 0]
    np.testing.assert_array_equal(store.to_tensor("cpu").numpy(), expected)
    assert store.to_tensor("cpu", torch.float32).dtype == torch.float32
    with pytest.raises(InputError, match="'nope'"):
        store.rows(["d1", "nope"])


def test_resume_after_a_crash_gives_the_same_store(tmp_path):
    data = vectors()
    writer = EmbeddingStoreWriter(tmp_path / "crashed", IDS, dim=4, fingerprint=FINGERPRINT)
    writer.write(0, data[:4])
    writer.write(4, data[4:6])
    writer.close()
    del writer  # the crash: the process is gone, the partial folder stays
    with pytest.raises(InputError, match="unfinished.*6 rows written"):
        EmbeddingStore.open(tmp_path / "crashed")

    resumed = EmbeddingStoreWriter(tmp_path / "crashed", IDS, dim=4, fingerprint=FINGERPRINT)
    assert resumed.pending() == [(6, 10)] and resumed.rows_done == 6
    for start, end in resumed.pending():
        resumed.write(start, data[start:end])
    crashed = resumed.finalize()
    whole = write_store(tmp_path / "whole", data, "float16")
    assert (tmp_path / "crashed" / "embeddings.bin").read_bytes() == (tmp_path / "whole" / "embeddings.bin").read_bytes()
    assert crashed.ids == whole.ids and crashed.meta == {**whole.meta}
    assert sorted(p.name for p in (tmp_path / "crashed").iterdir()) == ["embeddings.bin", "ids.txt", "store.json"]


def test_resume_refuses_a_partial_store_planned_differently(tmp_path):
    EmbeddingStoreWriter(tmp_path / "s", IDS, dim=4, fingerprint=FINGERPRINT).write(0, vectors()[:2])
    with pytest.raises(InputError, match="weights_sha"):
        EmbeddingStoreWriter(tmp_path / "s", IDS, dim=4, fingerprint={**FINGERPRINT, "weights_sha": "other"})
    fresh = EmbeddingStoreWriter(tmp_path / "s", IDS, dim=4, fingerprint={**FINGERPRINT, "weights_sha": "x"},
                                 overwrite=True)
    assert fresh.pending() == [(0, 10)]


def test_shards_fill_one_store_and_finalise_checks_every_row(tmp_path):
    data = vectors()
    first = EmbeddingStoreWriter(tmp_path / "s", IDS, dim=4, fingerprint=FINGERPRINT, rows=(0, 5))
    second = EmbeddingStoreWriter(tmp_path / "s", IDS, dim=4, fingerprint=FINGERPRINT, rows=(5, 10))
    first.write(0, data[:5])
    with pytest.raises(ValueError, match="outside"):
        first.write(4, data[4:6])
    with pytest.raises(InputError, match=r"not written yet: \[\(5, 10\)\]"):
        first.finalize()
    second.write(5, data[5:])
    store = first.finalize()
    np.testing.assert_array_equal(store.embeddings, data.astype(np.float16))


def test_partial_folder_never_opens(tmp_path):
    writer = EmbeddingStoreWriter(tmp_path / "s", IDS, dim=4, fingerprint=FINGERPRINT)
    writer.write(0, vectors())
    with pytest.raises(InputError, match="unfinished"):
        EmbeddingStore.open(partial_path(tmp_path / "s"))
    with pytest.raises(InputError, match="unfinished"):
        EmbeddingStore.open(tmp_path / "s")
    with pytest.raises(InputError, match="not an embedding store"):
        EmbeddingStore.open(tmp_path / "nothing")


def test_truncated_memmap_is_a_clear_error(tmp_path):
    write_store(tmp_path / "s")
    data = tmp_path / "s" / "embeddings.bin"
    data.write_bytes(data.read_bytes()[:-8])
    with pytest.raises(InputError, match=r"embeddings.bin: 152 bytes, but .*store.json says 10 x 4 float32 = 160"):
        EmbeddingStore.open(tmp_path / "s")


def test_ids_count_must_match_the_sidecar(tmp_path):
    write_store(tmp_path / "s")
    (tmp_path / "s" / "ids.txt").write_text("\n".join(IDS[:9]) + "\n")
    with pytest.raises(InputError, match="9 ids, but .* 10 rows"):
        EmbeddingStore.open(tmp_path / "s")


def test_incompatible_fingerprint_names_the_fields(tmp_path):
    store = write_store(tmp_path / "s")
    store.check_compatible(dict(FINGERPRINT))
    store.check_compatible({**FINGERPRINT, "model": "/a/folder/of/m"})  # same weights under another name: fine
    with pytest.raises(InputError, match=r"model: store made by 'm', expected 'other'; weights_sha.*; dim: store "
                                         r"has 4, expected 8"):
        store.check_compatible({**FINGERPRINT, "model": "other", "weights_sha": "zzz", "dim": 8})
    with pytest.raises(InputError, match="pooling: store has 'cls', expected 'mean'"):
        store.check_compatible({**FINGERPRINT, "pooling": "mean"})
    with pytest.raises(InputError, match="model: store has 'm', expected 'x'"):  # no weights hash: names decide
        store.check_compatible({"model": "x", "dim": 4})


def test_writer_rejects_bad_ids_and_existing_store(tmp_path):
    with pytest.raises(InputError, match="duplicate"):
        EmbeddingStoreWriter(tmp_path / "a", ["x", "y", "x"], dim=4)
    with pytest.raises(InputError, match="line break"):
        EmbeddingStoreWriter(tmp_path / "b", ["x", "y\nz"], dim=4)
    write_store(tmp_path / "s")
    with pytest.raises(InputError, match="already there"):
        EmbeddingStoreWriter(tmp_path / "s", IDS, dim=4)


# ---- candidates --------------------------------------------------------------------------------------------------
@pytest.fixture()
def store(tmp_path):
    return write_store(tmp_path / "store")


def test_candidates_from_a_run(tmp_path, store):
    run = {"q1": {"d2": 1.0, "d5": 3.0, "d7": 2.0}, "q2": {"d9": 0.5}}
    candidates = CandidateStore.from_run(run, store, depth=2, path=tmp_path / "c", source="bm25.trec")
    assert candidates.query_ids == ["q1", "q2"] and candidates.depth == 2
    assert candidates.rows("q1").tolist() == [5, 7]  # ranking order, cut at depth
    assert candidates.rows("q2").tolist() == [9, -1]  # padded
    assert candidates.matrix.dtype == np.int32 and candidates.matrix.shape == (2, 2)
    reopened = CandidateStore.open(tmp_path / "c", store)
    np.testing.assert_array_equal(reopened.matrix, [[5, 7], [9, -1]])
    assert reopened.scores("q1").tolist() == [3.0, 2.0] and np.isnan(reopened.scores("q2")[1])
    assert reopened.to_run(store) == {"q1": {"d5": 3.0, "d7": 2.0}, "q2": {"d9": 0.5}}
    assert reopened.meta["source"] == "bm25.trec"
    with pytest.raises(InputError, match="'q3'"):
        reopened.rows("q3")


def test_candidates_errors_name_the_id_and_the_query(tmp_path, store):
    with pytest.raises(InputError, match=r"bm25.trec: document 'd99' \(query 'q2'\) is not in the embedding store"):
        CandidateStore.from_run({"q1": {"d1": 1.0}, "q2": {"d99": 1.0}}, store, 5, tmp_path / "c", "bm25.trec")
    with pytest.raises(InputError, match="query 'q2' has no candidates"):
        CandidateStore.from_run({"q1": {"d1": 1.0}, "q2": {}}, store, 5, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_candidates_refuse_another_store_and_a_short_file(tmp_path, store):
    CandidateStore.from_run({"q1": {"d1": 1.0}}, store, 3, tmp_path / "c")
    other = EmbeddingStoreWriter(tmp_path / "other", IDS[::-1], dim=4)
    other.write(0, vectors())
    with pytest.raises(InputError, match="rebuild the candidates"):
        CandidateStore.open(tmp_path / "c", other.finalize())
    rows = tmp_path / "c" / "rows.bin"
    rows.write_bytes(rows.read_bytes()[:-4])
    with pytest.raises(InputError, match="rows.bin: 8 bytes, but .* 1 x 3 int32 = 12 bytes"):
        CandidateStore.open(tmp_path / "c")
