"""Candidate documents per query as row indices into an `EmbeddingStore` (CODER's M_C: any run, BM25 or dense).

A candidate store is a folder:

    <path>/rows.bin        queries x depth int32: row indices into the embedding store, in ranking order; -1 pads
    <path>/scores.bin      queries x depth float32: the run's scores (NaN pads), e.g. to evaluate M_C itself
    <path>/query_ids.txt   one query id per line: the query of each matrix row
    <path>/candidates.json format, shape, where the run came from, and which embedding store the rows index

Ids are resolved to rows once, when the store is made, so training gathers `embeddings[rows]` with no string work.
The store is written beside its final name and renamed, so it is either whole or absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lit_ir.data.embedding_store import EmbeddingStore, open_matrix, read_ids, read_sidecar
from lit_ir.data.trec import Run, rank_documents
from lit_ir.errors import InputError
from lit_ir.utils.io import atomic_dir, write_json

FORMAT = "lit_ir.candidates/1"
SIDECAR_FILE = "candidates.json"
ROWS_FILE = "rows.bin"
SCORES_FILE = "scores.bin"
QUERY_IDS_FILE = "query_ids.txt"
PAD = -1


class CandidateStore:
    def __init__(self, path: Path, query_ids: list[str], matrix: np.memmap, scores: np.memmap, meta: dict):
        self.path = path
        self.query_ids = query_ids
        self.matrix = matrix
        self.score_matrix = scores
        self.meta = meta
        self.depth = int(meta["depth"])
        self._index = {qid: i for i, qid in enumerate(query_ids)}

    @classmethod
    def from_run(
        cls,
        run: Run,
        store: EmbeddingStore,
        depth: int,
        path: str | os.PathLike,
        source: str | None = None,
    ) -> "CandidateStore":
        """Write the top-`depth` documents of each query of `run` (in `rank_documents` order) as store rows.

        InputError, before anything is written: a query with no candidates (names it), a document id that the
        embedding store lacks (names it and its query). `source` (e.g. the run file) is recorded in the sidecar.
        """
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if not run:
            raise InputError(f"{source or 'run'}: no queries")
        where = f"{source}: " if source else ""
        row_of = store.row_of
        rows = np.full((len(run), depth), PAD, dtype=np.int32)
        scores = np.full((len(run), depth), np.nan, dtype=np.float32)
        for i, (qid, docs) in enumerate(run.items()):
            if not docs:
                raise InputError(f"{where}query {qid!r} has no candidates")
            doc_ids, doc_scores = zip(*rank_documents(docs)[:depth])
            found = list(map(row_of.get, doc_ids))  # C-level lookups: millions of candidates in seconds
            if None in found:
                doc_id = doc_ids[found.index(None)]
                raise InputError(f"{where}document {doc_id!r} (query {qid!r}) is not in the embedding store "
                                 f"{store.path}")
            rows[i, : len(found)], scores[i, : len(found)] = found, doc_scores
        path = Path(path)
        meta = {"format": FORMAT, "queries": len(run), "depth": depth, "source": source,
                "embedding_store": str(store.path), "store_ids_digest": store.meta["ids_digest"],
                "store_fingerprint": store.fingerprint,
                "candidates_per_query": {"min": int((rows >= 0).sum(1).min()), "max": int((rows >= 0).sum(1).max())}}
        with atomic_dir(path) as staging:
            rows.tofile(staging / ROWS_FILE)
            scores.tofile(staging / SCORES_FILE)
            (staging / QUERY_IDS_FILE).write_text("".join(f"{qid}\n" for qid in run), encoding="utf-8")
            write_json(meta, staging / SIDECAR_FILE)  # last: a folder with a sidecar is complete
        return cls.open(path, store)

    @classmethod
    def open(cls, path: str | os.PathLike, store: EmbeddingStore | None = None) -> "CandidateStore":
        """Open a candidate store; with `store`, also check that its rows index that embedding store's ids."""
        path = Path(path)
        meta = read_sidecar(path, SIDECAR_FILE, FORMAT, "a candidate store")
        shape, sidecar_path = (int(meta["queries"]), int(meta["depth"])), path / SIDECAR_FILE
        rows = open_matrix(path / ROWS_FILE, np.int32, shape, sidecar_path)
        scores = open_matrix(path / SCORES_FILE, np.float32, shape, sidecar_path)
        query_ids = read_ids(path / QUERY_IDS_FILE, shape[0], sidecar_path)
        candidates = cls(path, query_ids, rows, scores, meta)
        if store is not None:
            candidates.check_store(store)
        return candidates

    def check_store(self, store: EmbeddingStore) -> None:
        """InputError unless the rows were made for `store`'s ids (same ids in the same order)."""
        if self.meta["store_ids_digest"] != store.meta["ids_digest"]:
            raise InputError(f"{self.path}: the candidate rows index the embedding store "
                             f"{self.meta['embedding_store']} (ids {self.meta['store_ids_digest']}), not {store.path} "
                             f"(ids {store.meta['ids_digest']}); rebuild the candidates for this store")

    def __len__(self) -> int:
        return len(self.query_ids)

    def __contains__(self, query_id: str) -> bool:
        return query_id in self._index

    def index(self, query_id: str) -> int:
        try:
            return self._index[query_id]
        except KeyError:
            raise InputError(f"{self.path}: query {query_id!r} has no candidates in this store") from None

    def rows(self, query_id: str) -> np.ndarray:
        """[depth] int32 store rows in ranking order, -1 after the last candidate."""
        return np.asarray(self.matrix[self.index(query_id)])

    def scores(self, query_id: str) -> np.ndarray:
        """[depth] float32 first-stage scores, NaN where `rows` pads."""
        return np.asarray(self.score_matrix[self.index(query_id)])

    def to_run(self, store: EmbeddingStore) -> Run:
        """Back to {query: {doc id: first-stage score}}, e.g. to evaluate M_C or write it as a TREC run."""
        self.check_store(store)
        run: Run = {}
        for qid, rows, scores in zip(self.query_ids, self.matrix, self.score_matrix):
            keep = rows >= 0
            run[qid] = {store.ids[row]: float(score) for row, score in zip(rows[keep], scores[keep])}
        return run
