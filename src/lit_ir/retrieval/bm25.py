"""BM25 over a document collection with bm25s: build, search, save and load.

Text is analysed by `Analyzer` (lowercase, words of 2+ characters, stopwords removed, Snowball stemming), the
same for documents and queries; the vocabulary is built here, in order of first occurrence, so the same input
always gives the same index files.

Only documents that share at least one term with the query are returned: with Lucene's idf (always > 0) that is
exactly the documents with a score > 0. Ties are broken by doc id descending, the order of
`lit_ir.data.trec.rank_documents`, so a run cut at depth k here and one cut when writing keep the same documents.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import count, filterfalse
from pathlib import Path
from typing import Literal

import bm25s
import numpy as np
import Stemmer

from lit_ir.data.trec import Run
from lit_ir.errors import InputError, check_doc_ids, some_ids
from lit_ir.utils.io import atomic_dir, write_json

log = logging.getLogger(__name__)
# bm25s sets its logger to DEBUG, which lets its debug messages through whatever level the application chose.
logging.getLogger("bm25s").setLevel(logging.INFO)

Stopwords = str | Sequence[str] | None
Backend = Literal["auto", "numpy", "numba"]

SIDECAR_FILE = "lit_ir_bm25.json"
DOC_IDS_FILE = "doc_ids.json"
FORMAT = "lit_ir.bm25/1"
# bm25s's numba search compiles for ~7 s per process, then runs ~3x faster than numpy (benchmarks/bench_bm25.py,
# 2 cores: 0.44 vs 1.3 s for 1,000 queries on 100k docs); "auto" takes it once a search is big enough
# (queries x documents) to repay the compilation. Extra threads did not help either backend on 2 cores.
NUMBA_MIN_WORK = 1_000_000_000
# Lucene's idf is the only bm25s variant where "score > 0" means "shares a term with the query": robertson's idf
# is negative for common terms, atire's is 0 for a term in every document, bm25l/bm25+ score every document.
SUPPORTED_METHODS = ("lucene",)
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's and scikit-learn's default: words of 2+ characters


class Analyzer:
    """Text -> index terms: lowercase, split into words, drop stopwords, stem (PyStemmer's Snowball stemmers).

    `stopwords` is a bm25s language name ("en", "english", "de", ...), a list of words, or None.
    """

    def __init__(self, stemmer: str | None = "english", stopwords: Stopwords = "en"):
        self.stemmer = stemmer
        self.stopwords = stopwords if stopwords is None or isinstance(stopwords, str) else list(stopwords)
        # bm25s resolves language names to its stopword lists (and raises ValueError for unknown names).
        self._stopword_set = (
            frozenset(bm25s.tokenization.Tokenizer(stopwords=stopwords).stopwords) if stopwords else frozenset()
        )
        self._stemmer = _snowball_stemmer(stemmer) if stemmer else None

    def __call__(self, text: str) -> list[str]:
        words = TOKEN_PATTERN.findall(text.lower())
        if self._stopword_set:
            words = list(filterfalse(self._stopword_set.__contains__, words))  # C-level loop: 2x a comprehension
        return self._stemmer.stemWords(words) if self._stemmer else words

    def config(self) -> dict:
        return {"stemmer": self.stemmer, "stopwords": self.stopwords}


def _snowball_stemmer(name: str) -> Stemmer.Stemmer:
    try:
        return Stemmer.Stemmer(name)
    except KeyError:
        raise ValueError(f"unknown stemmer {name!r}; PyStemmer has {sorted(Stemmer.algorithms())}") from None


class BM25Index:
    """A bm25s index plus the doc ids of its rows and the analyzer that made its terms."""

    def __init__(self, bm25: bm25s.BM25, doc_ids: list[str], analyzer: Analyzer):
        self._bm25 = bm25
        self.doc_ids = doc_ids
        self.analyzer = analyzer
        # Position of each doc id in ascending id order: the tie-break key, computed once.
        self._id_rank = np.empty(len(doc_ids), dtype=np.int64)
        self._id_rank[np.argsort(np.array(doc_ids, dtype=object))] = np.arange(len(doc_ids))

    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def params(self) -> dict:
        return {"k1": self._bm25.k1, "b": self._bm25.b, "method": self._bm25.method, **self.analyzer.config()}

    @classmethod
    def build(
        cls,
        doc_ids: Sequence[str],
        texts: Iterable[str],
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: Stopwords = "en",
    ) -> BM25Index:
        """Index `texts[i]` under `doc_ids[i]`. Raises InputError for no documents, duplicate ids or no terms."""
        if method not in SUPPORTED_METHODS:
            raise ValueError(f"BM25 method {method!r} is not supported; use one of {SUPPORTED_METHODS}")
        doc_ids = list(doc_ids)
        check_doc_ids(doc_ids, "a BM25 index")
        analyzer = Analyzer(stemmer, stopwords)
        # Terms get ids in order of first occurrence, one document at a time, so the term strings of the whole
        # collection are never held at once; the lists share the dict's int objects (8 bytes per occurrence).
        term_ids: defaultdict[str, int] = defaultdict(count().__next__)
        corpus_term_ids = [list(map(term_ids.__getitem__, analyzer(text))) for text in texts]
        if len(corpus_term_ids) != len(doc_ids):
            raise InputError(f"got {len(doc_ids)} doc ids but {len(corpus_term_ids)} texts")
        if not term_ids:
            raise InputError(f"none of the {len(doc_ids)} documents has an indexable term (all empty or stopwords)")
        bm25 = bm25s.BM25(k1=k1, b=b, method=method, backend="numpy")
        bm25.index((corpus_term_ids, dict(term_ids)), create_empty_token=False, show_progress=False)
        return cls(bm25, doc_ids, analyzer)

    def search(
        self,
        queries: Mapping[str, str],
        k: int,
        batch_size: int = 10_000,
        n_threads: int = 1,
        backend: Backend = "auto",
    ) -> Run:
        """Top-`k` documents per query (fewer when fewer documents share a term with it), in ranking order.

        Every query gets an entry; a query with no term in the index vocabulary gets an empty ranking and is named
        in a warning. `k` larger than the collection is clipped. `batch_size` bounds the memory of bm25s's result
        arrays; `n_threads` > 1 runs bm25s's thread pool (numpy) or parallel kernel (numba, compiles for ~5 s more).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        depth = min(k, self.num_docs)
        query_term_ids = {qid: self._term_ids(text) for qid, text in queries.items()}
        _warn_unmatched([qid for qid, term_ids in query_term_ids.items() if not term_ids], len(queries))
        matched = [qid for qid, term_ids in query_term_ids.items() if term_ids]
        self._bm25.backend = _choose_backend(backend, len(matched) * self.num_docs)
        run: Run = {qid: {} for qid in queries}
        for start in range(0, len(matched), batch_size):
            batch = matched[start : start + batch_size]
            # One more than needed, to see whether a tie straddles the cut (see `_ranking`).
            indices, scores = self._bm25.retrieve(
                [query_term_ids[qid] for qid in batch],
                k=min(depth + 1, self.num_docs),
                n_threads=n_threads,
                backend_selection=self._bm25.backend,  # never jax, whose top-k breaks ties its own way
                show_progress=False,
            )
            for qid, row_indices, row_scores in zip(batch, indices, scores, strict=True):
                run[qid] = self._ranking(query_term_ids[qid], row_indices, row_scores, depth)
        return run

    def _term_ids(self, text: str) -> list[int]:
        # Unseen terms cannot match any document; a repeated term adds its score once per occurrence, as in Lucene.
        vocabulary = self._bm25.vocab_dict
        return [vocabulary[term] for term in self.analyzer(text) if term in vocabulary]

    def _ranking(self, term_ids: list[int], indices: np.ndarray, scores: np.ndarray, depth: int) -> dict[str, float]:
        matching = scores > 0
        indices, scores = indices[matching], scores[matching]
        if len(scores) > depth and scores[depth - 1] == scores[depth]:
            # bm25s picks arbitrary members of a tie at the cut; take every document at the boundary score instead.
            all_scores = self._bm25.get_scores_from_ids(term_ids)
            indices = np.flatnonzero(all_scores >= scores[depth])
            scores = all_scores[indices]
        order = np.lexsort((-self._id_rank[indices], -scores))[:depth]
        return {self.doc_ids[i]: s for i, s in zip(indices[order].tolist(), scores[order].tolist(), strict=True)}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index to `directory` atomically: built beside it under a temporary name, then renamed.

        The sidecar (parameters, number of docs) is written last, so a directory that has it is complete.
        """
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self._bm25.save(tmp, show_progress=False)
            write_json(self.doc_ids, tmp / DOC_IDS_FILE)
            sidecar = {
                "format": FORMAT,
                **self.params,
                "num_docs": self.num_docs,
                "num_terms": len(self._bm25.vocab_dict),
                "bm25s_version": bm25s.__version__,
            }
            write_json(sidecar, tmp / SIDECAR_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BM25Index:
        directory = Path(directory)
        sidecar_path = directory / SIDECAR_FILE
        if not sidecar_path.is_file():
            raise InputError(f"{directory}: not a lit_ir BM25 index ({SIDECAR_FILE} is missing)")
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        if sidecar.get("format") != FORMAT:
            raise InputError(f"{sidecar_path}: format {sidecar.get('format')!r}, expected {FORMAT!r}")
        doc_ids = json.loads((directory / DOC_IDS_FILE).read_text(encoding="utf-8"))
        bm25 = bm25s.BM25.load(directory, load_corpus=False, show_progress=False)
        if not len(doc_ids) == sidecar["num_docs"] == bm25.scores["num_docs"]:
            raise InputError(
                f"{directory}: inconsistent index: {len(doc_ids)} doc ids in {DOC_IDS_FILE}, "
                f"{sidecar['num_docs']} in {SIDECAR_FILE}, {bm25.scores['num_docs']} in the bm25s index"
            )
        return cls(bm25, doc_ids, Analyzer(sidecar["stemmer"], sidecar["stopwords"]))


def _warn_unmatched(query_ids: list[str], num_queries: int) -> None:
    if query_ids:
        log.warning(
            "%d of %d queries have no term in the index vocabulary (empty, only stopwords or unseen words) "
            "and get an empty ranking: %s",
            len(query_ids),
            num_queries,
            some_ids(query_ids),
        )


def _choose_backend(backend: Backend, work: int) -> str:
    if backend == "auto":
        return "numba" if work >= NUMBA_MIN_WORK else "numpy"
    if backend not in ("numpy", "numba"):
        raise ValueError(f"unknown backend {backend!r}; expected 'auto', 'numpy' or 'numba'")
    return backend
