"""Where candidates come from: callables `first_stage(collection, split) -> run`.

The returned run has one entry per query of the split, in the split's order; a query without candidates keeps an
empty ranking (and is named in a warning), so the caller decides whether to skip it or count it as a miss.
Every doc id in a run is checked against the collection.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from lit_ir.data.collections import Collection, HeldOut
from lit_ir.data.trec import Run, rank_documents, read_run, write_run
from lit_ir.errors import InputError, some_ids
from lit_ir.retrieval.bm25 import SIDECAR_FILE, Analyzer, BM25Index
from lit_ir.utils.hashing import fingerprint, short_hash

log = logging.getLogger(__name__)


class BM25FirstStage:
    """BM25 runs computed once and cached under `cache_dir/<collection name>/`:

    - `bm25-<key>/`: the index; key = hash of the BM25 parameters and the documents' content (ids and texts, in
      order: `DocStore.fingerprint`);
    - `runs/<split>.bm25-k<k>-<key>.trec`: a split's run; key = hash of the index key and the split's queries
      (ids and texts).

    So a changed parameter, document (a corrected text under the same id, in a folder of the same name) or query
    never reuses a stale index or run, while a collection moved elsewhere keeps its cache: keys depend on content,
    not on paths.
    """

    def __init__(
        self,
        k: int = 100,
        cache_dir: str | os.PathLike = ".cache/lit_ir",
        k1: float = 0.9,
        b: float = 0.4,
        stemmer: str | None = "english",
        stopwords: str | list[str] | None = "en",
    ):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.cache_dir = Path(cache_dir)
        # The analyzer validates stemmer and stopwords now, not after the collection is loaded.
        self.params = {"k1": float(k1), "b": float(b), "method": "lucene", **Analyzer(stemmer, stopwords).config()}
        self._index: tuple[Path, BM25Index] | None = None  # the last index used, kept for the next split

    def __call__(self, collection: Collection, split: str) -> Run:
        queries = collection.queries(split)
        docs = collection.docs()
        doc_ids = list(docs)
        index_key = short_hash(self.params, docs.fingerprint())
        folder = self.cache_dir / safe_name(collection.name)
        run_key = short_hash(index_key, queries_fingerprint(queries))
        run_path = folder / "runs" / f"{safe_name(split)}.bm25-k{self.k}-{run_key}.trec"
        if run_path.is_file():
            log.info("reading the cached BM25 run of %s/%s from %s", collection.name, split, run_path)
            run = read_run(run_path)
        else:
            index = self._load_or_build(folder / f"bm25-{index_key}", doc_ids, docs)
            start = time.perf_counter()
            run = index.search(queries, self.k)
            log.info(
                "searched %d queries of %s/%s in %.1f s",
                len(queries),
                collection.name,
                split,
                time.perf_counter() - start,
            )
            write_run(run, run_path, tag="bm25")
            log.info("wrote %s", run_path)
        return candidates_for_split(run, queries, set(doc_ids), source=str(run_path))

    def _load_or_build(self, directory: Path, doc_ids: list[str], docs: Mapping[str, str]) -> BM25Index:
        if self._index is not None and self._index[0] == directory:
            return self._index[1]
        start = time.perf_counter()
        if (directory / SIDECAR_FILE).is_file():  # written last, so the index is complete
            index = BM25Index.load(directory)
            log.info("loaded the BM25 index %s in %.1f s", directory, time.perf_counter() - start)
        else:
            log.info("building a BM25 index of %d documents", len(doc_ids))
            index = BM25Index.build(doc_ids, (docs[doc_id] for doc_id in doc_ids), **self.params)
            index.save(directory)
            log.info("built and saved the BM25 index %s in %.1f s", directory, time.perf_counter() - start)
        self._index = (directory, index)
        return index


class RunFiles:
    """Candidates from given TREC run files (another system's, e.g. HDCT's or ANCE's top 100): `paths` {split: file},
    or a `folder` holding one file per split named `file_name` (`{split}` is the split's name); `k` keeps the top-k
    of each query.

    A split held out from another (`train_fit` / `train_val` of `train`, see `HeldOut`) reads the run of the split it
    is held out from, unless a file is given for it.
    """

    def __init__(self, paths: Mapping[str, str | os.PathLike] | None = None, k: int | None = None,
                 folder: str | os.PathLike | None = None, file_name: str = "{split}.trec"):
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1 or None, got {k}")
        if (paths is None) == (folder is None):
            raise ValueError("give the run files as paths ({split: file}) or as a folder of <split>.trec files "
                             "(data.first_stage.folder=...), not both")
        if "{split}" not in file_name:
            raise ValueError(f"file_name {file_name!r} has no {{split}} placeholder")
        self.paths = {split: Path(path) for split, path in (paths or {}).items()}
        self.folder, self.file_name, self.k = (Path(folder) if folder else None), file_name, k

    def path(self, collection: Collection, split: str) -> Path:
        held_out = getattr(collection, "held_out", None)
        if split not in self.paths and HeldOut.holds(held_out, split):
            split = held_out.split
        if self.folder is not None:
            return self.folder / self.file_name.format(split=split)
        if split not in self.paths:
            raise InputError(f"no run file given for split {split!r}; run files are given for {sorted(self.paths)}")
        return self.paths[split]

    def __call__(self, collection: Collection, split: str) -> Run:
        path = self.path(collection, split)
        if not path.is_file():
            raise InputError(f"the run file of split {split!r} does not exist: {path}")
        run = read_run(path)
        if self.k is not None:
            run = {qid: dict(rank_documents(docs)[: self.k]) for qid, docs in run.items()}
        return candidates_for_split(run, collection.queries(split), set(collection.docs()), source=str(path))


def candidates_for_split(run: Run, queries: Mapping[str, str], doc_ids: set[str], source: str) -> Run:
    """`run` restricted to the split's queries, one entry per query (empty when it has no candidates).

    Raises InputError naming the doc id, `source` and the query for a document that is not in the collection.
    Queries of the run outside the split and queries of the split without candidates are named in warnings.
    """
    for qid, docs in run.items():
        for doc_id in docs:
            if doc_id not in doc_ids:
                raise InputError(f"{source}: document id {doc_id!r} (query {qid!r}) is not in the collection")
    outside = [qid for qid in run if qid not in queries]
    if outside:
        log.warning("%s: %d queries are not in the split and are left out: %s", source, len(outside), some_ids(outside))
    candidates = {qid: run.get(qid, {}) for qid in queries}
    empty = [qid for qid, docs in candidates.items() if not docs]
    if empty:
        log.warning(
            "%s: %d of %d queries of the split have no candidates (kept with an empty ranking): %s",
            source,
            len(empty),
            len(queries),
            some_ids(empty),
        )
    return candidates


def queries_fingerprint(queries: Mapping[str, str]) -> str:
    """Hash of a query set's ids and texts, in order: part of every cached run's key."""
    return fingerprint(f"{qid}\t{text}" for qid, text in queries.items())


def safe_name(name: str) -> str:
    """A folder name for a collection or split name: one folder level, and distinct names stay distinct.

    Collection names can be ir_datasets ids such as "msmarco-passage/dev"; characters other than letters, digits,
    "." and "-" become "_", and a name that had any gets a hash of the original, so "cran field" and
    "cran_field" never share a folder.
    """
    safe = re.sub(r"[^\w.-]", "_", name)
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"
