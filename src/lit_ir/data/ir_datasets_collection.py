"""Collections over ir_datasets ids: one id per split, documents through ir_datasets' lazy docs_store.

ir_datasets downloads missing files on first use. Here downloads are off unless asked for (`download=True`): a
file that is not present locally raises `CollectionUnavailableError` at once, naming the dataset id and how to
provide the file, instead of starting a multi-GB download or waiting on network retries and timeouts.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import functools
import os
from collections.abc import Callable, ItemsView, Iterator, Mapping
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import ir_datasets
from ir_datasets.datasets.base import Dataset
from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
from ir_datasets.util.download import GoogleCloudBucketStream, GoogleDriveDownload, LocalDownload, RequestsDownload

from lit_ir.data.collections import Click, Collection, DocStore, HeldOut, Qrels, Queries, join_title_text
from lit_ir.data.trec import read_qrels
from lit_ir.errors import CollectionUnavailableError, InputError

_CLICKS_PER_CHUNK = 10_000  # clicks resolved per docs_store.get_many call (one batched url lookup)


class IrDatasetsCollection(Collection):
    """A collection whose splits are ir_datasets ids, e.g. {"dev": "msmarco-passage/dev/small"}.

    - Documents come from `docs_id` (default: the first split's dataset) through ir_datasets' `docs_store()`,
      which builds its index on first lookup. Text is the title joined with the body, whichever field holds it.
    - Queries are all queries of the split's dataset, from `query_field` (default `text`, else `title`: the
      title of TREC topics such as Robust04's).
    - Qrels keep ir_datasets' grades, except that negative grades (e.g. Cranfield's -1 "of no interest", TREC
      Web's -2 "junk") become 0: they mean judged non-relevant, and a negative gain would lower nDCG below a
      ranking of unjudged documents. Qrels ids are not checked against the corpus (that would build the
      docs_store of millions of documents); an unknown id fails when looked up, naming it.
    - Clicks come from `clicks_id` (e.g. msmarco-document/orcas), one click per qrel, with the clicked document's
      url where the documents have one. The click log's queries are held in memory (ORCAS: 10.4M queries).
    - `qrels_files` {split: TREC qrels file}: judgments that ir_datasets does not ship (TripClick's test sets); a
      missing file raises CollectionUnavailableError naming the path it should be at.
    - `held_out` {split, size, seed, exclude}: adds `<split>_fit` / `<split>_val` (see `HeldOut`), e.g. 10,000
      queries of MS MARCO's judged dev set outside dev/small to select checkpoints on.
    """

    def __init__(
        self,
        name: str,
        splits: Mapping[str, str],
        docs_id: str | None = None,
        clicks_id: str | None = None,
        query_field: str | None = None,
        download: bool = False,
        qrels_files: Mapping[str, str | os.PathLike] | None = None,
        held_out: Mapping | None = None,
    ):
        if not splits:
            raise InputError(f"collection {name}: no splits given")
        self.name = name
        self._split_ids = dict(splits)
        self._qrels_files = {split: Path(path) for split, path in (qrels_files or {}).items()}
        if unknown := sorted(set(self._qrels_files) - set(self._split_ids)):
            raise InputError(f"collection {name}: qrels_files are given for {unknown}, which are not among its "
                             f"splits {list(self._split_ids)}")
        self.held_out = HeldOut.parse(held_out)
        HeldOut.extend(self.held_out, list(self._split_ids), f"collection {name}")  # names checked now
        self.docs_id = docs_id or next(iter(self._split_ids.values()))
        self.clicks_id = clicks_id
        self.query_field = query_field
        self.download = download
        # Resolve every id now (no download needed) so a typo fails at instantiation, not mid-training.
        if not _load_dataset(self.docs_id).has_docs():
            raise InputError(f"collection {name}: ir_datasets {self.docs_id!r} has no documents")
        for dataset_id in [*self._split_ids.values(), *([clicks_id] if clicks_id else [])]:
            if _load_dataset(dataset_id).has_queries():
                self._query_field(dataset_id)

    def splits(self) -> list[str]:
        return HeldOut.extend(self.held_out, list(self._split_ids), f"collection {self.name}")

    def dataset_id(self, split: str) -> str:
        """The ir_datasets id of `split` (of the split it is held out from, for `<split>_fit` / `<split>_val`)."""
        self._check_split(split)
        return self._split_ids[self.held_out.split if HeldOut.holds(self.held_out, split) else split]

    @cached_property
    def _docs(self) -> DocStore:
        return DocStore(_DocTexts(self.docs_id, self.download), source=f"{self.name} ({self.docs_id})")

    def docs(self) -> DocStore:
        return self._docs

    def queries(self, split: str) -> Queries:
        if HeldOut.holds(self.held_out, split):
            return self.held_out.queries(split, self)
        return self._read_queries(self.dataset_id(split))

    def qrels(self, split: str) -> Qrels:
        dataset_id = self.dataset_id(split)
        if HeldOut.holds(self.held_out, split):
            return self.held_out.qrels(split, self)
        if split in self._qrels_files:
            return self._local_qrels(split, dataset_id)
        dataset = _load_dataset(dataset_id)
        if not dataset.has_qrels():
            raise InputError(f"collection {self.name}: split {split!r} ({dataset_id}) has no qrels in ir_datasets")
        qrels: Qrels = {}
        with reading_files_of(dataset_id, self.download):
            for qrel in dataset.qrels_iter():
                grade = max(qrel.relevance, 0)  # negative = judged non-relevant (see the class docstring)
                judged = qrels.setdefault(qrel.query_id, {})
                if judged.setdefault(qrel.doc_id, grade) != grade:
                    raise InputError(
                        f"{dataset_id}: conflicting grades for query {qrel.query_id!r}, document {qrel.doc_id!r}"
                    )
        return qrels

    def _local_qrels(self, split: str, dataset_id: str) -> Qrels:
        path = self._qrels_files[split]
        if not path.is_file():
            raise CollectionUnavailableError(
                f"collection {self.name}: the qrels of split {split!r} ({dataset_id}) are not in ir_datasets and not "
                f"at {path}. Put them there (TREC qrels: 'query_id 0 doc_id grade' per line), or pass another path "
                f"with collection.source.qrels_files.{split}=<file>")
        qrels = read_qrels(path)
        queries = self.queries(split)
        if unknown := [query_id for query_id in qrels if query_id not in queries]:
            raise InputError(f"{path}: query id {unknown[0]!r} ({len(unknown)} in all) is not a query of {dataset_id}")
        return {query_id: {doc_id: max(grade, 0) for doc_id, grade in judged.items()}
                for query_id, judged in qrels.items()}

    def clicks(self) -> Iterator[Click]:
        if self.clicks_id is None:
            raise InputError(f"collection {self.name} has no click log (no clicks_id given)")
        dataset = _load_dataset(self.clicks_id)
        queries = self._read_queries(self.clicks_id)
        with reading_files_of(self.clicks_id, self.download):
            qrels = iter(dataset.qrels_iter())
            urls = dataset.docs_store() if "url" in dataset.docs_cls()._fields else None
        while True:
            # Each chunk is read under the offline guard; yielding happens outside it.
            with reading_files_of(self.clicks_id, self.download):
                chunk = list(islice(qrels, _CLICKS_PER_CHUNK))
                url_of = urls.get_many({qrel.doc_id for qrel in chunk}, field="url") if urls is not None else {}
            if not chunk:
                return
            for qrel in chunk:
                if qrel.query_id not in queries:
                    raise InputError(f"{self.clicks_id}: click on query id {qrel.query_id!r}, which has no query text")
                if urls is not None and qrel.doc_id not in url_of:
                    raise InputError(
                        f"{self.clicks_id}: click on document id {qrel.doc_id!r}, which is not in the corpus"
                    )
                yield Click(qrel.query_id, queries[qrel.query_id], qrel.doc_id, url_of.get(qrel.doc_id, ""))

    def _read_queries(self, dataset_id: str) -> Queries:
        dataset = _load_dataset(dataset_id)
        if not dataset.has_queries():
            raise InputError(f"collection {self.name}: ir_datasets {dataset_id!r} has no queries")
        field = self._query_field(dataset_id)
        queries: Queries = {}
        with reading_files_of(dataset_id, self.download):
            for query in dataset.queries_iter():
                text = getattr(query, field)
                if queries.setdefault(query.query_id, text) != text:
                    raise InputError(f"{dataset_id}: query id {query.query_id!r} appears twice with different texts")
        return queries

    def _query_field(self, dataset_id: str) -> str:
        fields = _load_dataset(dataset_id).queries_cls()._fields
        field = self.query_field or ("text" if "text" in fields else "title")
        if field == "query_id" or field not in fields:
            raise InputError(
                f"collection {self.name}: queries of {dataset_id} have no text field {field!r}; "
                f"choose query_field from {list(fields[1:])}"
            )
        return field


class _DocTexts(Mapping[str, str]):
    """Doc id -> text over an ir_datasets docs_store; unknown ids raise KeyError (DocStore names them)."""

    def __init__(self, dataset_id: str, download: bool):
        self._dataset_id = dataset_id
        self._dataset = _load_dataset(dataset_id)
        self._download = download

    def _local(self):
        return reading_files_of(self._dataset_id, self._download)

    @cached_property
    def _store(self):
        with self._local():
            return self._dataset.docs_store()

    def __getitem__(self, doc_id: str) -> str:
        with self._local():
            return doc_text(self._store.get(doc_id))

    def __iter__(self) -> Iterator[str]:
        with self._local():  # fetch (or fail) now, not inside the caller's loop
            next(iter(self._dataset.docs_iter()), None)
        return (doc.doc_id for doc in self._dataset.docs_iter())

    def items(self) -> ItemsView[str, str]:
        return _StreamedItems(self)

    def __len__(self) -> int:
        with self._local():
            count = self._dataset.docs_count()  # from ir_datasets' metadata when it knows it
        return count if count is not None else sum(1 for _ in self)


class _StreamedItems(ItemsView):
    """(doc id, text) in corpus order, read in one pass over docs_iter rather than a docs_store lookup per id."""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        texts = self._mapping
        with texts._local():  # fetch (or fail) now, not inside the caller's loop
            next(iter(texts._dataset.docs_iter()), None)
        return ((doc.doc_id, doc_text(doc)) for doc in texts._dataset.docs_iter())


def doc_text(doc: NamedTuple) -> str:
    """Title joined with the body, whichever field holds it: `text` (GenericDoc, BEIR, TripClick, Cranfield) or
    `body` (MS MARCO documents, TREC disks); other layouts use ir_datasets' own `default_text()`."""
    body = getattr(doc, "text", None)
    if body is None:
        body = getattr(doc, "body", None)
    if body is None:
        return doc.default_text()
    return join_title_text(getattr(doc, "title", ""), body)


def _load_dataset(dataset_id: str):
    """ir_datasets.load, with an InputError that suggests close ids. Needs no download."""
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        close = difflib.get_close_matches(dataset_id, list(ir_datasets.registry), n=5, cutoff=0.6)
        raise InputError(f"unknown ir_datasets id {dataset_id!r}; close ids: {close}") from None


def register_local_dataset(
    dataset_id: str, docs_tsv: str | os.PathLike, queries_tsv: str | os.PathLike, qrels_trec: str | os.PathLike
) -> str:
    """Register local files under an ir_datasets id, for use in IrDatasetsCollection splits.

    docs_tsv: 'doc_id<TAB>text' lines; queries_tsv: 'query_id<TAB>text'; qrels_trec: 'qid iter docid grade'.
    ir_datasets writes its docs_store index beside docs_tsv, so that folder must be writable.
    """
    paths = {"docs": Path(docs_tsv), "queries": Path(queries_tsv), "qrels": Path(qrels_trec)}
    for what, path in paths.items():
        if not path.is_file():
            raise InputError(f"register_local_dataset({dataset_id!r}): {what} file {path} does not exist")
    if not os.access(paths["docs"].parent, os.W_OK):
        raise InputError(f"{paths['docs'].parent} is not writable; ir_datasets writes the docs_store index there")
    if dataset_id in ir_datasets.registry:
        raise InputError(f"ir_datasets id {dataset_id!r} is already registered")
    dataset = Dataset(
        TsvDocs(LocalDownload(paths["docs"])),
        TsvQueries(LocalDownload(paths["queries"])),
        TrecQrels(LocalDownload(paths["qrels"]), qrels_defs={}),
    )
    ir_datasets.registry.register(dataset_id, dataset)
    return dataset_id


# --- offline guard -------------------------------------------------------------------------------------------
# ir_datasets reaches the network only through the `stream()` of these download sources. Each is wrapped once to
# refuse while the current context is offline, so a missing file fails at once rather than after ir_datasets'
# retries and timeouts (3 tries x 15 s per mirror where a firewall drops packets).
_OFFLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("lit_ir_ir_datasets_offline", default=False)
_ALL_SOURCES_FAILED = "All download sources failed"  # ir_datasets' RuntimeError, with [(source, error), ...]


class _DownloadRefused(ConnectionRefusedError):
    """What a download source raises instead of contacting the network while downloads are off."""


def _refuse_when_offline(stream: Callable) -> Callable:
    @functools.wraps(stream)
    def guarded(source, *args, **kwargs):
        if _OFFLINE.get():
            url = getattr(source, "url", None) or getattr(source, "uri", "")
            raise _DownloadRefused(f"would download {url} (downloads are off)")
        return stream(source, *args, **kwargs)

    return guarded


for _remote in (RequestsDownload, GoogleDriveDownload, GoogleCloudBucketStream):
    _remote.stream = _refuse_when_offline(_remote.stream)
del _remote


@contextlib.contextmanager
def reading_files_of(dataset_id: str, download: bool = False) -> Iterator[None]:
    """Run ir_datasets calls that read the files of `dataset_id`. A file missing locally (downloads off), or whose
    download failed (downloads on), raises CollectionUnavailableError saying how to provide it.

    Consume ir_datasets iterators inside the block: the guard does not follow a generator out of it.
    """
    token = _OFFLINE.set(not download)
    try:
        yield
    except Exception as err:
        if not _is_missing_file(err):
            raise
        raise CollectionUnavailableError(_how_to_provide(dataset_id, err, download)) from err
    finally:
        _OFFLINE.reset(token)


def _all_sources_failed(err: Exception) -> bool:
    return isinstance(err, RuntimeError) and err.args[:1] == (_ALL_SOURCES_FAILED,)


def _is_missing_file(err: Exception) -> bool:
    requests = ir_datasets.lazy_libs.requests()
    missing = (FileNotFoundError, _DownloadRefused, requests.exceptions.RequestException)
    return isinstance(err, missing) or _all_sources_failed(err)


def _reason(err: Exception) -> str:
    if _all_sources_failed(err):
        return "; ".join(_reason(source_err) for _, source_err in err.args[1])
    if isinstance(err, FileNotFoundError) and err.filename is None:  # ir_datasets' LocalDownload: args = (path,)
        return f"no file at {err.args[0]}"
    return str(err)


def _how_to_provide(dataset_id: str, err: Exception, download: bool) -> str:
    top = dataset_id.split("/")[0]
    or_download = "" if download else "set collection.source.download=true on a machine with internet access, "
    return (
        f"ir_datasets {dataset_id!r} is not available locally: {_reason(err)}. Provide its files under "
        f"IR_DATASETS_HOME ({ir_datasets.util.home_path() / top}) as https://ir-datasets.com/{top}.html#{dataset_id} "
        f"describes (ir_datasets' log above names each file and where a local copy can be linked), {or_download}"
        "or use your own files with collection=local_tsv or collection=local_beir."
    )
