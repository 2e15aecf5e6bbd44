"""One collection interface over ir_datasets ids, local folders and the built-in toy collection.

A collection has documents, and per split (train/dev/test/...) queries and graded qrels; some also have a click
log in ORCAS's layout. Ids are strings everywhere.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

from lit_ir.data.trec import read_qrels
from lit_ir.errors import InputError
from lit_ir.utils.hashing import fingerprint

log = logging.getLogger(__name__)

Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Click:
    """One click-log row in ORCAS's layout."""

    query_id: str
    query: str
    doc_id: str
    url: str


class DocStore(Mapping[str, str]):
    """Doc id -> text. Raises InputError naming the id (and the collection) for unknown ids."""

    def __init__(self, texts: Mapping[str, str], source: str):
        self._texts = texts
        self.source = source
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        """Hash of every (doc id, text), in order: what cached indexes, stores and runs are keyed by, so a corpus
        corrected under the same ids (or name, or folder) is told apart, and a moved one is not. One pass over
        the texts, once per store."""
        if self._fingerprint is None:
            start = time.perf_counter()
            self._fingerprint = fingerprint(chain.from_iterable(self.items()))
            log.debug("fingerprinted %d documents of %s in %.1f s", len(self), self.source,
                      time.perf_counter() - start)
        return self._fingerprint

    def items(self):
        return self._texts.items()  # the backing mapping's: a lazy store streams them instead of a lookup per id

    def __getitem__(self, doc_id: str) -> str:
        try:
            return self._texts[doc_id]
        except KeyError:
            raise InputError(f"unknown document id {doc_id!r} in collection {self.source}") from None

    # Mapping's own `in` and get() catch KeyError from __getitem__, which raises InputError here.
    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._texts

    def get(self, doc_id: str, default: str | None = None) -> str | None:
        return self._texts.get(doc_id, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)


class Collection(ABC):
    """Documents plus queries and qrels per split."""

    name: str

    @abstractmethod
    def docs(self) -> DocStore: ...

    @abstractmethod
    def splits(self) -> list[str]: ...

    @abstractmethod
    def queries(self, split: str) -> Queries: ...

    @abstractmethod
    def qrels(self, split: str) -> Qrels: ...

    def clicks(self) -> Iterator[Click]:
        raise InputError(f"collection {self.name} has no click log")

    def _check_split(self, split: str) -> None:
        if split not in self.splits():
            raise InputError(f"collection {self.name} has no split {split!r}; its splits are {self.splits()}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, splits={self.splits()})"


def join_title_text(title: str, text: str) -> str:
    """BEIR documents have a title and a text; some collections (Cranfield) repeat the title in the text."""
    title, text = (title or "").strip(), (text or "").strip()
    if not title or text.startswith(title):
        return text
    return f"{title} {text}" if text else title


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{line_no}: invalid JSON ({err.msg}): {line.strip()[:200]}") from None


class BeirCollection(Collection):
    """A local folder in BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv, and optionally clicks.tsv.

    Queries of a split are the queries that have qrels in that split. Every qrels id is checked against the corpus
    and the queries file, so a typo fails here, naming the file.

    `held_out={"split": "train", "size": 20, "seed": 0}` adds two splits, `train_fit` and `train_val`: a seeded
    sample of `size` training queries to select checkpoints on, and the rest to train on (see `HeldOut`). Folders
    whose only other split is the one reported on (Cranfield's and SciFact's dev) then never select models on it.
    """

    def __init__(self, path: str | Path, name: str | None = None, clicks_file: str = "clicks.tsv",
                 held_out: Mapping | None = None):
        self.path = Path(path)
        self.name = name or self.path.name
        if not (self.path / "corpus.jsonl").is_file():
            raise InputError(f"{self.path}: not a BEIR folder (corpus.jsonl is missing)")
        self._clicks_path = self.path / clicks_file
        self.held_out = HeldOut.parse(held_out)

    @cached_property
    def _docs(self) -> DocStore:
        path = self.path / "corpus.jsonl"
        texts: dict[str, str] = {}
        for line_no, row in _read_jsonl(path):
            doc_id = _require_id(row, path, line_no)
            if doc_id in texts:
                raise InputError(f"{path}:{line_no}: duplicate document id {doc_id!r}")
            texts[doc_id] = join_title_text(row.get("title", ""), row.get("text", ""))
        if not texts:
            raise InputError(f"{path}: the collection has no documents")
        return DocStore(texts, source=str(self.path))

    @cached_property
    def _all_queries(self) -> Queries:
        path = self.path / "queries.jsonl"
        queries: Queries = {}
        for line_no, row in _read_jsonl(path):
            query_id = _require_id(row, path, line_no)
            if query_id in queries:
                raise InputError(f"{path}:{line_no}: duplicate query id {query_id!r}")
            queries[query_id] = row.get("text", "")
        return queries

    def docs(self) -> DocStore:
        return self._docs

    def _file_splits(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "qrels").glob("*.tsv"))

    def splits(self) -> list[str]:
        files = self._file_splits()
        return sorted(HeldOut.extend(self.held_out, files, f"{self.path}/qrels"))

    def qrels(self, split: str) -> Qrels:
        self._check_split(split)
        if HeldOut.holds(self.held_out, split):
            return self.held_out.qrels(split, self)
        path = self.path / "qrels" / f"{split}.tsv"
        return check_qrels_ids(read_qrels(path), path, self._all_queries, self.path / "queries.jsonl",
                               self.docs(), self.path / "corpus.jsonl")

    def queries(self, split: str) -> Queries:
        return {query_id: self._all_queries[query_id] for query_id in self.qrels(split)}

    def clicks(self) -> Iterator[Click]:
        if not self._clicks_path.is_file():
            raise InputError(f"collection {self.name} has no click log ({self._clicks_path} is missing)")
        yield from read_clicks(self._clicks_path)


class HeldOut:
    """`size` judged queries of `split`, drawn by a seeded shuffle of the sorted ids, held out as `<split>_val` to
    select checkpoints on; the rest of the split's judged queries is `<split>_fit`. The draw depends only on
    (seed, the split's judged query ids, the excluded ids), not on file order.

    `exclude`: splits whose queries are in neither part (MS MARCO's dev/small inside the full dev set), so the
    validation queries are never ones the run reports on. Any collection class takes it as `held_out=` and asks
    `extend` / `holds` / `qrels` / `queries`; the selection is computed once per collection.
    """

    def __init__(self, split: str, size: int, seed: int = 0, exclude: Sequence[str] = ()):
        if isinstance(exclude, str):
            exclude = [exclude]
        self.split, self.size, self.seed, self.exclude = split, int(size), int(seed), tuple(exclude)
        self._selection: tuple[list[str], list[str]] | None = None  # (fit ids, val ids)

    @classmethod
    def parse(cls, config: Mapping | None) -> "HeldOut | None":
        return cls(**config) if config else None

    @property
    def names(self) -> tuple[str, str]:
        return f"{self.split}_fit", f"{self.split}_val"

    @staticmethod
    def holds(held_out: "HeldOut | None", split: str) -> bool:
        return held_out is not None and split in held_out.names

    @staticmethod
    def extend(held_out: "HeldOut | None", splits: list[str], source: str) -> list[str]:
        """A collection's own `splits` plus the held-out pair (checked against them)."""
        if held_out is None:
            return list(splits)
        for key, split in [("split", held_out.split), *(("exclude", split) for split in held_out.exclude)]:
            if split not in splits:
                raise InputError(f"{source}: held_out.{key} {split!r} is not one of its splits {splits}")
        clashes = sorted(set(held_out.names) & set(splits))
        if clashes:
            raise InputError(f"{source}: the splits {clashes} clash with the held-out split names")
        return [*splits, *held_out.names]

    def select(self, name: str, qrels: Qrels, excluded: set[str] = frozenset()) -> list[str]:
        """The query ids of `name` (`<split>_fit` or `<split>_val`) among `qrels`, the source split's judgments."""
        order = sorted(query_id for query_id in qrels if query_id not in excluded)
        if not 0 < self.size < len(order):
            raise InputError(f"held_out.size must be between 1 and {len(order) - 1} (split {self.split!r} has "
                             f"{len(order)} judged queries outside {list(self.exclude)}), got {self.size}")
        shuffled = list(order)
        random.Random(self.seed).shuffle(shuffled)
        held = set(shuffled[: self.size])
        keep = name == self.names[1]
        return [query_id for query_id in order if (query_id in held) == keep]

    def _ids(self, name: str, collection: Collection) -> list[str]:
        if self._selection is None:
            qrels = collection.qrels(self.split)
            excluded = {query_id for split in self.exclude for query_id in collection.queries(split)}
            self._selection = (self.select(self.names[0], qrels, excluded), self.select(self.names[1], qrels, excluded))
        return self._selection[self.names.index(name)]

    def qrels(self, name: str, collection: Collection) -> Qrels:
        source = collection.qrels(self.split)
        return {query_id: source[query_id] for query_id in self._ids(name, collection)}

    def queries(self, name: str, collection: Collection) -> Queries:
        source = collection.queries(self.split)
        return {query_id: source[query_id] for query_id in self._ids(name, collection)}

    def __repr__(self) -> str:
        return f"HeldOut(split={self.split!r}, size={self.size}, seed={self.seed}, exclude={list(self.exclude)})"


def check_validation_disjoint(collection: Collection, val_split: str | None, test_splits: list[str]) -> None:
    """Checkpoints are selected on `val_split`: none of its queries may be in a split the run reports on."""
    if not val_split:
        return
    advice = ("so checkpoints would be selected on test queries. Validate on a split of its own "
              "(collection.val_split=...), or set allow_validation_on_test=true to accept a development result")
    if val_split in test_splits:  # said before any (possibly remote) query set is loaded
        raise InputError(f"collection {collection.name}: the validation split {val_split!r} is also a test split, "
                         f"{advice}")
    val_queries = set(collection.queries(val_split))
    for split in test_splits:
        shared = sorted(val_queries & set(collection.queries(split)))
        if shared:
            raise InputError(f"collection {collection.name}: the validation split {val_split!r} shares "
                             f"{len(shared)} queries with the test split {split!r} (e.g. {shared[0]!r}), {advice}")


def check_qrels_ids(qrels: Qrels, path, queries: Mapping[str, str], queries_source, docs: Mapping[str, str],
                    docs_source) -> Qrels:
    """Every judged query and document must exist: a typo in a qrels file fails here, naming both files."""
    for query_id, judged in qrels.items():
        if query_id not in queries:
            raise InputError(f"{path}: query id {query_id!r} is not in {queries_source}")
        for doc_id in judged:
            if doc_id not in docs:
                raise InputError(f"{path}: document id {doc_id!r} (query {query_id!r}) is not in {docs_source}")
    return qrels


def read_clicks(path: str | Path) -> Iterator[Click]:
    """Read a click log in ORCAS's layout: query id, query, doc id, url (tab-separated, no header)."""
    with open(path, encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row:
                continue
            if len(row) != 4:
                raise InputError(f"{path}:{line_no}: expected 4 tab-separated columns (qid, query, docid, url), got {len(row)}")
            yield Click(*row)


def _require_id(row: dict, path: Path, line_no: int) -> str:
    if "_id" not in row:
        raise InputError(f"{path}:{line_no}: the row has no '_id' field")
    return str(row["_id"])
