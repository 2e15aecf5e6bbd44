"""Tokenise (query, document) pairs in the model's own pair layout (BERT: `[CLS] query [SEP] document [SEP]`,
RoBERTa: `<s> query </s></s> document </s>`) with separate length budgets, and check length settings against what a
model's position embeddings can take."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer
from transformers import PretrainedConfig, PreTrainedTokenizerBase

# Model families whose position ids start after the padding index: max_position_embeddings counts those
# pad_token_id + 1 unused rows (RoBERTa: 514 embeddings, 512 tokens).
PADDING_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet",
                                      "longformer", "data2vec-text"})


def position_limit(config: PretrainedConfig) -> int | None:
    """The most tokens a model's position embeddings take (None: no fixed limit, e.g. relative positions)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return None
    if getattr(config, "model_type", None) in PADDING_OFFSET_POSITIONS:
        limit -= (config.pad_token_id or 0) + 1
    return limit


def check_length(config: PretrainedConfig, setting: str, value: int, model: str) -> None:
    """ValueError naming `setting` when `value` tokens exceed the positions of `model` (whose config this is):
    otherwise the first long enough batch fails with a shape error deep in transformers, maybe hours later."""
    limit = position_limit(config)
    if limit is not None and value > limit:
        raise ValueError(f"{setting}={value} is more than the {limit} positions of {model} (max_position_embeddings "
                         f"in its config.json); set {setting} to at most {limit}")


class TruncationCount:
    """How many texts a tokenizer cut to fit the length settings: distinct queries (by text), and documents, each
    time one is tokenised (for a cross-encoder per (query, document) pair: how much of a document fits depends
    on its query's length). Filled from the tokenizer output that is computed anyway (`was_cut`)."""

    def __init__(self) -> None:
        self.queries: set[str] = set()
        self.cut_queries: set[str] = set()
        self.documents = 0
        self.cut_documents = 0

    def add_queries(self, texts: list[str], cut: list[bool]) -> None:
        self.queries.update(texts)
        self.cut_queries.update(text for text, was in zip(texts, cut) if was)

    def add_documents(self, cut: list[bool]) -> None:
        self.documents += len(cut)
        self.cut_documents += sum(cut)

    def merge(self, other: "TruncationCount") -> None:
        self.queries |= other.queries
        self.cut_queries |= other.cut_queries
        self.documents += other.documents
        self.cut_documents += other.cut_documents

    def summary(self) -> dict[str, int]:
        return {"queries": len(self.queries), "truncated_queries": len(self.cut_queries),
                "documents": self.documents, "truncated_documents": self.cut_documents}


def was_cut(batch, limit: int) -> list[bool]:
    """Which texts of a tokenised batch (truncation=True, max_length=limit) lost tokens. Fast tokenizers keep the
    cut-off tokens in `overflowing`; for a slow one, a text that fills the limit exactly counts as cut."""
    if batch.encodings is not None:
        return [bool(encoding.overflowing) for encoding in batch.encodings]
    return [len(ids) >= limit for ids in batch["input_ids"]]


def pair_template(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int], list[int]]:
    """The special tokens the tokenizer's own pair template puts before, between and after the two texts, read off
    its post-processor (BERT: [CLS] | [SEP] | [SEP]; RoBERTa: <s> | </s></s> | </s>). A tokenizer without one (a
    slow tokenizer, or a bare tokenizer object) gets BERT's layout with its cls and sep tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.post_processor is None:
        return [tokenizer.cls_token_id], [tokenizer.sep_token_id], [tokenizer.sep_token_id]
    probe = Tokenizer.from_str(backend.to_str())  # a copy: padding and truncation off, the tokenizer untouched
    probe.no_padding()
    probe.no_truncation()
    first, second = (probe.encode(text, add_special_tokens=False) for text in ("a", "b"))
    pair = probe.post_process(first, second, add_special_tokens=True)
    before, between, after = parts = ([], [], [])
    part = 0
    for token, sequence in zip(pair.ids, pair.sequence_ids):
        if sequence is None:
            parts[part].append(token)
        else:
            part = sequence + 1  # specials after text 0's tokens go between, after text 1's at the end
    return before, between, after


class PairTokenizer:
    """Queries are cut to `max_query_length` tokens first; documents get whatever is left of `max_length`.

    Hugging Face's pair truncation cannot express "query at most q tokens, then fill with the document", and
    "only_second" fails outright on a long query; assembling the ids here is exact and still fast.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_query_length: int = 32, max_length: int = 256):
        self.before, self.between, self.after = pair_template(tokenizer)
        self.specials = len(self.before) + len(self.between) + len(self.after)
        if max_query_length + self.specials >= max_length:
            raise ValueError(f"max_length ({max_length}) must exceed max_query_length ({max_query_length}) + "
                             f"{self.specials} special tokens")
        self.tokenizer = tokenizer
        self.max_query_length = max_query_length
        self.max_length = max_length

    def _ids(self, texts: list[str], limit: int) -> tuple[list[list[int]], list[bool]]:
        batch = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=limit)
        return batch["input_ids"], was_cut(batch, limit)

    def __call__(self, queries: list[str], docs: list[str],
                 count: TruncationCount | None = None) -> dict[str, torch.Tensor]:
        """Tokenised pairs; `count` (optional) adds the queries and documents that were cut."""
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries but {len(docs)} documents")
        pad = self.tokenizer.pad_token_id
        query_ids, query_cut = self._ids(queries, self.max_query_length)
        doc_ids, doc_cut = self._ids(docs, self.max_length - self.specials)
        sequences, segments = [], []
        for row, (query, doc) in enumerate(zip(query_ids, doc_ids)):
            budget = self.max_length - self.specials - len(query)
            doc_cut[row] = doc_cut[row] or len(doc) > budget
            doc = doc[:budget]
            sequences.append([*self.before, *query, *self.between, *doc, *self.after])
            query_part = len(self.before) + len(query) + len(self.between)
            segments.append([0] * query_part + [1] * (len(doc) + len(self.after)))
        width = max(map(len, sequences))
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        token_type_ids = torch.zeros((len(sequences), width), dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (ids, types) in enumerate(zip(sequences, segments)):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            token_type_ids[row, : len(ids)] = torch.tensor(types)
            attention_mask[row, : len(ids)] = 1
        if count is not None:
            count.add_queries(queries, query_cut)
            count.add_documents(doc_cut)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
