"""Encode texts with a `BiEncoder`: queries into an array, a collection's documents into an `EmbeddingStore`.

Texts are encoded in order of length within each chunk, so a batch holds texts of similar length and pads little;
results go back to the input order.

Document encoding is resumable (see `EmbeddingStoreWriter`) and can split across DDP ranks: with `across_ranks=True`
and torch.distributed initialised (`python -m lit_ir.encode` under torchrun), rank r encodes the r-th contiguous shard of the rows into the shared, preallocated memmap, and rank 0
finalises the store after a barrier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from lit_ir.data.embedding_store import EmbeddingStore, EmbeddingStoreWriter
from lit_ir.errors import InputError
from lit_ir.models.bi_encoder import BiEncoder
from lit_ir.models.tokenization import TruncationCount

log = logging.getLogger(__name__)


def encode_texts(encoder: BiEncoder, texts: Sequence[str], side: str = "query", batch_size: int = 64,
                 count: TruncationCount | None = None) -> np.ndarray:
    """[len(texts), dim] float32 embeddings of queries (`side="query"`) or documents (`side="doc"`); `count`
    (optional) adds the texts that were cut to the encoder's length."""
    if side not in ("query", "doc"):
        raise ValueError(f"side must be 'query' or 'doc', got {side!r}")
    tokenize = encoder.tokenize_queries if side == "query" else encoder.tokenize_docs
    embed = encoder.embed_queries if side == "query" else encoder.embed_docs
    order = np.argsort([-len(text) for text in texts], kind="stable")
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = order[start : start + batch_size]
                out[batch] = embed(tokenize([texts[i] for i in batch], count)).float().cpu().numpy()
    finally:
        encoder.train(was_training)
    return out


def shard(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [start, end) of `rank` when `count` rows are split into `world_size` contiguous, near-equal shards."""
    return count * rank // world_size, count * (rank + 1) // world_size


def encode_documents(
    encoder: BiEncoder,
    docs: Mapping[str, str],
    path: str | os.PathLike,
    doc_ids: Sequence[str] | None = None,
    dtype: str = "float16",
    batch_size: int = 64,
    chunk_size: int = 4096,
    overwrite: bool = False,
    progress: bool = True,
    across_ranks: bool = False,
) -> EmbeddingStore:
    """Encode `docs` (in `doc_ids` order, default: the mapping's) into the store at `path` and open it.

    A finished store at `path` made by this encoder is reused; one made by another encoder is an InputError unless
    `overwrite`. An unfinished one is resumed. Each chunk of `chunk_size` documents is written and recorded as
    done before the next, so a crash loses at most one chunk.

    `across_ranks=True` (with torch.distributed initialised) splits the rows into one shard per rank; every rank
    must then call this with the same arguments. It is off by default because first stages run where only one
    rank calls them (Lightning's prepare_data), and a barrier there would wait forever.
    """
    path = Path(path)
    doc_ids = list(docs) if doc_ids is None else list(doc_ids)
    fingerprint = encoder.fingerprint()
    distributed = across_ranks and dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)

    if path.exists() and not overwrite:
        store = EmbeddingStore.open(path)
        store.check_compatible(fingerprint)
        if store.ids != doc_ids:
            raise InputError(f"{path}: the embedding store holds other documents ({len(store)} ids) than the "
                             f"collection ({len(doc_ids)} ids); pass overwrite=True to re-encode")
        log.info("reusing the embedding store %s", path)
        return store

    def make_writer() -> EmbeddingStoreWriter:
        return EmbeddingStoreWriter(path, doc_ids, encoder.dim, fingerprint, dtype,
                                    rows=shard(len(doc_ids), rank, world_size), overwrite=overwrite)

    writer = make_writer() if rank == 0 else None  # rank 0 creates (or discards) the partial folder first
    _barrier(distributed)
    writer = writer or make_writer()
    total = writer.rows[1] - writer.rows[0]
    if distributed:
        log.info("rank %d of %d encodes rows %d-%d of %s", rank, world_size, *writer.rows, path)
    if writer.rows_done:
        log.info("resuming %s: %d of %d rows of this shard already written", path, writer.rows_done, total)
    bar = tqdm(total=total, initial=writer.rows_done, unit="doc", unit_scale=True, dynamic_ncols=True,
               desc=f"encoding {path.name}" + (f" [rank {rank}]" if distributed else ""),
               disable=not progress or rank != 0)  # tqdm's rate is the docs/s
    try:
        for start, end in writer.pending():
            for chunk_start in range(start, end, chunk_size):
                chunk_ids = doc_ids[chunk_start : min(chunk_start + chunk_size, end)]
                count = TruncationCount()
                embeddings = encode_texts(encoder, [docs[doc_id] for doc_id in chunk_ids], "doc", batch_size, count)
                writer.write(chunk_start, embeddings, truncated=count.cut_documents)
                bar.update(len(chunk_ids))
    finally:
        bar.close()
        writer.close()
    _barrier(distributed)
    if rank == 0:
        truncated = writer.finalize().meta["truncated_documents"]
        log.log(logging.WARNING if truncated else logging.INFO, "%s: %d of %d documents (%.0f%%) were cut to "
                "doc_max_length=%d tokens", path, truncated, len(doc_ids), 100 * truncated / len(doc_ids),
                encoder.doc_max_length)
    _barrier(distributed)
    return EmbeddingStore.open(path)


def _barrier(distributed: bool) -> None:
    if distributed:
        dist.barrier()
