"""A collection from plain local files: a docs TSV, and per split a queries TSV and TREC qrels."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path

from lit_ir.data.collections import Collection, DocStore, HeldOut, Qrels, Queries, check_qrels_ids, join_title_text
from lit_ir.data.trec import read_qrels
from lit_ir.errors import InputError


class TsvCollection(Collection):
    """Documents in `docs` ('doc_id<TAB>text' or 'doc_id<TAB>title<TAB>text', no header; the first line fixes
    the layout), and per split {"queries": 'query_id<TAB>text' TSV, "qrels": TREC (or BEIR TSV) qrels}.

    Queries of a split are all the queries in its file. Every qrels id is checked against the docs and the
    split's queries, so a typo fails here, naming the file. `held_out` carves a validation split out of one of
    them (see `HeldOut`).
    """

    def __init__(self, name: str, docs: str | os.PathLike, splits: Mapping[str, Mapping[str, str | os.PathLike]],
                 held_out: Mapping | None = None):
        self.name = name
        self.held_out = HeldOut.parse(held_out)
        self.docs_path = Path(docs)
        self._split_files: dict[str, tuple[Path, Path]] = {}
        for split, files in splits.items():
            if set(files) != {"queries", "qrels"}:
                raise InputError(
                    f"collection {name}: split {split!r} needs exactly the keys queries and qrels, got {list(files)}"
                )
            self._split_files[split] = (Path(files["queries"]), Path(files["qrels"]))
        for path in [self.docs_path, *(path for pair in self._split_files.values() for path in pair)]:
            if not path.is_file():
                raise InputError(f"collection {name}: file {path} does not exist")

    @cached_property
    def _docs(self) -> DocStore:
        texts: dict[str, str] = {}
        columns = None
        path = self.docs_path
        for line_no, fields in _read_tsv(path):
            columns = columns or len(fields)
            if columns not in (2, 3):
                raise InputError(
                    f"{path}:{line_no}: expected 2 or 3 tab-separated columns (doc_id, [title,] text), got {columns}"
                )
            if len(fields) != columns:
                raise InputError(
                    f"{path}:{line_no}: expected {columns} tab-separated columns like the first line, got {len(fields)}"
                )
            doc_id = fields[0]
            _check_new_id(doc_id, texts, "document", path, line_no)
            texts[doc_id] = fields[1] if columns == 2 else join_title_text(fields[1], fields[2])
        if not texts:
            raise InputError(f"{path}: the collection has no documents")
        return DocStore(texts, source=str(path))

    def docs(self) -> DocStore:
        return self._docs

    def splits(self) -> list[str]:
        return HeldOut.extend(self.held_out, list(self._split_files), f"collection {self.name}")

    def queries(self, split: str) -> Queries:
        self._check_split(split)
        if HeldOut.holds(self.held_out, split):
            return self.held_out.queries(split, self)
        path = self._split_files[split][0]
        queries: Queries = {}
        for line_no, fields in _read_tsv(path):
            if len(fields) != 2:
                raise InputError(
                    f"{path}:{line_no}: expected 2 tab-separated columns (query_id, text), got {len(fields)}"
                )
            _check_new_id(fields[0], queries, "query", path, line_no)
            queries[fields[0]] = fields[1]
        return queries

    def qrels(self, split: str) -> Qrels:
        if HeldOut.holds(self.held_out, split):
            self._check_split(split)
            return self.held_out.qrels(split, self)
        queries = self.queries(split)  # checks the split name
        queries_path, path = self._split_files[split]
        return check_qrels_ids(read_qrels(path), path, queries, queries_path, self.docs(), self.docs_path)


def _read_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, tab-separated fields) for each non-blank line."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield line_no, line.split("\t")


def _check_new_id(item_id: str, seen: Mapping[str, str], what: str, path: Path, line_no: int) -> None:
    if not item_id or any(char.isspace() for char in item_id):  # TREC run and qrels files could not hold it
        raise InputError(f"{path}:{line_no}: {what} id {item_id!r} is empty or contains whitespace")
    if item_id in seen:
        raise InputError(f"{path}:{line_no}: duplicate {what} id {item_id!r}")
