"""Read and write TREC run files and qrels (TREC or BEIR TSV layout).

Run file line:   ``qid Q0 docid rank score tag``   (whitespace separated)
TREC qrels line: ``qid iter docid grade``          (whitespace separated)
BEIR qrels TSV:  ``query-id<TAB>corpus-id<TAB>score``, usually after a header line

A grade is an integer; an integral decimal (``2.0``, as pandas writes grades) reads as that integer, any other
value (``2.5``, ``high``) is an error.

Every malformed line raises `InputError` naming the file, the 1-based line number and the line itself.
Blank lines are skipped. An empty file reads as ``{}``; callers decide whether that is an error.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NoReturn

from lit_ir.errors import InputError
from lit_ir.utils.io import atomic_write

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]
QrelsFormat = Literal["auto", "trec", "beir"]
# Column names a qrels header may use (lower case): BEIR's `query-id corpus-id score` and common variants. Only a
# first line made of such names is a header; any other first line is data, so a grade like "2.0" is never lost.
HEADER_NAMES = (
    {"query-id", "query_id", "queryid", "qid", "query", "topic", "topic_id"},
    {"corpus-id", "corpus_id", "doc-id", "doc_id", "docid", "docno", "doc", "document", "pid", "passage_id"},
    {"score", "relevance", "rel", "grade", "label", "judgment", "judgement"},
)


def rank_documents(docs: dict[str, float]) -> list[tuple[str, float]]:
    """Order one query's documents by score descending, ties by doc id descending.

    This is trec_eval's order (it ignores the rank column and re-sorts by score, then doc id descending),
    so a written run evaluates the same in lit_ir, trec_eval, pytrec_eval and ir-measures, except that trec_eval
    keeps scores as 32-bit floats: scores that differ only beyond float32 precision tie there.
    """
    return sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)


def read_run(path: str | os.PathLike) -> Run:
    """Read a TREC run file into {query id: {doc id: score}}."""
    run: Run = {}
    for number, line, fields in _lines(path):
        if len(fields) != 6:
            _fail(path, number, line, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(fields)}")
        qid, _, docid, rank, score, _ = fields
        _parse_int(rank, "rank", path, number, line)
        docs = run.setdefault(qid, {})
        if docid in docs:
            _fail_duplicate(path, number, line, qid, docid, id_columns=(0, 2))
        docs[docid] = _parse_float(score, "score", path, number, line)
    return run


def read_qrels(path: str | os.PathLike, format: QrelsFormat = "auto") -> Qrels:
    """Read qrels into {query id: {doc id: grade}}.

    format="auto" picks "beir" when the first non-blank line has 3 tab-separated fields and "trec" otherwise.
    A BEIR file's first line is its header when its three fields are known column names (`HEADER_NAMES`).
    """
    if format not in ("auto", "trec", "beir"):
        raise ValueError(f"unknown qrels format {format!r}; expected 'auto', 'trec' or 'beir'")
    if format == "auto":
        format = _detect_qrels_format(path)
    if format == "trec":
        columns, sep, id_columns, layout = 4, None, (0, 2), "qid iter docid grade"
    else:
        columns, sep, id_columns, layout = 3, "\t", (0, 1), "query-id<TAB>corpus-id<TAB>score"
    qrels: Qrels = {}
    for index, (number, line, fields) in enumerate(_lines(path, sep)):
        if len(fields) != columns:
            _fail(path, number, line, f"expected {columns} columns '{layout}', got {len(fields)}")
        qid, docid, grade = fields[id_columns[0]], fields[id_columns[1]], fields[-1]
        if format == "beir" and index == 0 and _is_header(fields):
            continue
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            _fail_duplicate(path, number, line, qid, docid, id_columns, sep)
        docs[docid] = _parse_grade(grade, path, number, line)
    return qrels


def write_run(run: Run, path: str | os.PathLike, tag: str = "lit_ir", depth: int | None = None) -> Path:
    """Atomically write a run as a TREC run file, ranks 1..n in `rank_documents` order.

    `depth` keeps only the top-`depth` documents per query. Queries with no documents cannot be represented
    in the format and write no line. A NaN score is an InputError naming its query (`check_scores`).
    """
    _check_token(tag, "run tag")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    check_scores(run, f"run {path}")
    with atomic_write(path) as handle:
        for qid, docs in run.items():
            _check_token(qid, "query id")
            ranked = rank_documents({docid: float(score) for docid, score in docs.items()})[:depth]
            for rank, (docid, score) in enumerate(ranked, start=1):
                _check_token(docid, "doc id")
                handle.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
    return Path(path)


def check_scores(run: Run, what: str = "run") -> None:
    """InputError naming the query and document of a NaN score: NaN has no order, so a ranking with one is
    undefined (a diverged model's NaN scores would otherwise sort in the first stage's order, unnoticed)."""
    for qid, docs in run.items():
        if any(map(math.isnan, docs.values())):  # C-level scan: this runs on every evaluation and written run
            docid = next(docid for docid, score in docs.items() if math.isnan(score))
            raise InputError(f"{what}: query {qid!r}: document {docid!r} has a NaN score (a diverged model?)")


def write_qrels(qrels: Qrels, path: str | os.PathLike) -> Path:
    """Atomically write qrels in the TREC layout (``qid 0 docid grade``)."""
    with atomic_write(path) as handle:
        for qid, docs in qrels.items():
            _check_token(qid, "query id")
            for docid, grade in docs.items():
                _check_token(docid, "doc id")
                handle.write(f"{qid} 0 {docid} {int(grade)}\n")
    return Path(path)


def _lines(path: str | os.PathLike, sep: str | None = None) -> Iterator[tuple[int, str, list[str]]]:
    """Yield (1-based line number, line without newline, fields) for each non-blank line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line, [field.strip() for field in line.split(sep)] if sep else line.split()


def _detect_qrels_format(path: str | os.PathLike) -> Literal["trec", "beir"]:
    for _, line, _ in _lines(path):
        return "beir" if len(line.split("\t")) == 3 else "trec"
    return "trec"  # empty file: either layout reads as {}


def _fail_duplicate(
    path, number: int, line: str, qid: str, docid: str, id_columns: tuple[int, int], sep: str | None = None
) -> NoReturn:
    # The first occurrence is looked up only on this error path, so reading keeps no line numbers in memory.
    q, d = id_columns
    first = next(n for n, _, fields in _lines(path, sep) if fields[q] == qid and fields[d] == docid)
    _fail(path, number, line, f"duplicate (query id, doc id) ({qid!r}, {docid!r}), first on line {first}")


def _is_header(fields: list[str]) -> bool:
    return all(field.lower() in names for field, names in zip(fields, HEADER_NAMES, strict=True))


def _parse_grade(text: str, path, number: int, line: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    with contextlib.suppress(ValueError):
        value = float(text)
        if value.is_integer():
            return int(value)
    _fail(path, number, line, f"grade {text!r} is not an integer")


def _parse_int(text: str, what: str, path, number: int, line: str) -> int:
    try:
        return int(text)
    except ValueError:
        _fail(path, number, line, f"{what} {text!r} is not an integer")


def _parse_float(text: str, what: str, path, number: int, line: str) -> float:
    try:
        value = float(text)
    except ValueError:
        _fail(path, number, line, f"{what} {text!r} is not a number")
    if math.isnan(value):  # NaN has no order, so the ranking would be undefined
        _fail(path, number, line, f"{what} is NaN")
    return value


def _check_token(value: str, what: str) -> None:
    # An empty id or one with whitespace would write a line that no TREC reader can split back.
    if not value or any(char.isspace() for char in value):
        raise InputError(f"{what} {value!r} is empty or contains whitespace; cannot write it in TREC format")


def _fail(path, number: int, line: str, reason: str) -> NoReturn:
    raise InputError(f"{path}:{number}: {reason}: {line!r}")
