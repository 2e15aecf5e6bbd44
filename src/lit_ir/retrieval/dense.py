"""Dense retrieval: FAISS inner-product indexes over an `EmbeddingStore`, and a dense first stage.

Every index scores by inner product: a dot-product model's own score, and cosine for a cosine model (its stored
embeddings and queries are normalised). `kind`:

- "flat": exact search (IndexFlatIP), on the GPU when faiss has GPU support and CUDA is available; `shards=n`
  splits the rows into n contiguous shards (IndexShards, searched in parallel and merged; on GPUs one per GPU);
- "ivf": inverted lists (IndexIVFFlat): k-means cells, `nprobe` of them searched per query; approximate;
- "ivfpq": inverted lists of product-quantised codes (IndexIVFPQ): `pq_m` bytes per vector (at 8 bits), the index
  for MS MARCO scale on one device; approximate;
- "hnsw": a navigable small-world graph (IndexHNSWFlat); approximate, CPU only.
`index_memory(kind, count, dim, ...)` gives the bytes an index holds, in all and per shard (README: MS MARCO).

`DenseFirstStage` is the dense counterpart of `BM25FirstStage` (the paper's M_C when it is the base model itself):
a callable `(collection, split) -> run` that encodes the collection once into a cached store, searches it, and
caches each split's run.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from lit_ir.data.collections import Collection
from lit_ir.data.embedding_store import EmbeddingStore
from lit_ir.data.trec import Run, read_run, write_run
from lit_ir.models.bi_encoder import BiEncoder, weights_sha
from lit_ir.models.hub import RANDOM_BERT
from lit_ir.retrieval.encoding import encode_documents, encode_texts
from lit_ir.retrieval.first_stage import candidates_for_split, queries_fingerprint, safe_name
from lit_ir.utils.hashing import short_hash

log = logging.getLogger(__name__)

KINDS = ("flat", "ivf", "ivfpq", "hnsw")
ADD_CHUNK = 65_536  # rows converted to float32 and added at a time: no full float32 copy of an fp16 store
VOCAB_DOCS = 20_000  # a random-bert encoder learns its vocabulary from this many documents (as the datamodule does)


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and torch.cuda.is_available()


def default_nlist(count: int) -> int:
    """4 * sqrt(n) cells, at most n / 39 so that k-means has its 39 training points per cell."""
    return max(1, min(int(4 * math.sqrt(count)), count // 39))


def index_memory(kind: str, count: int, dim: int, shards: int = 1, nlist: int | None = None, pq_m: int | None = None,
                 pq_bits: int = 8, hnsw_m: int = 32) -> dict[str, int]:
    """Bytes an index holds (float32 vectors, int64 ids, coarse centroids, PQ codebooks, HNSW links): `total` and
    `per_shard` (flat with `shards`; one shard otherwise)."""
    nlist = nlist or default_nlist(count)
    vectors = count * dim * 4
    if kind == "flat":
        total = vectors
    elif kind == "ivf":
        total = vectors + count * 8 + nlist * dim * 4
    elif kind == "ivfpq":
        pq_m = pq_m or default_pq_m(dim)
        total = count * (pq_m * pq_bits // 8 + 8) + nlist * dim * 4 + (2**pq_bits) * dim * 4
    elif kind == "hnsw":
        total = vectors + count * hnsw_m * 2 * 4  # level 0 keeps 2M neighbours per node (int32), upper levels ~few %
    else:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {KINDS}")
    shards = shards if kind == "flat" else 1
    return {"total": total, "per_shard": -(-total // shards), "shards": shards}


def default_pq_m(dim: int) -> int:
    """8 dimensions per sub-quantiser (768 -> 96 bytes a vector); `dim` must divide."""
    if dim % 8:
        raise ValueError(f"ivfpq: dim {dim} is not a multiple of 8; give pq_m, a divisor of {dim}")
    return dim // 8


def _add(index: faiss.Index, matrix: np.ndarray, start: int, end: int) -> None:
    for chunk in range(start, end, ADD_CHUNK):
        index.add(np.ascontiguousarray(matrix[chunk : min(chunk + ADD_CHUNK, end)], dtype=np.float32))


class DenseIndex:
    """A FAISS index whose row i is document `ids[i]`."""

    def __init__(self, index: faiss.Index, ids: Sequence[str], kind: str, on_gpu: bool):
        self.index, self.ids, self.kind, self.on_gpu = index, list(ids), kind, on_gpu

    @classmethod
    def build(cls, store: EmbeddingStore, kind: str = "flat", use_gpu: bool | str = "auto", **params) -> "DenseIndex":
        """Index every row of `store`; `params` as for `from_matrix`."""
        return cls.from_matrix(store.embeddings, store.ids, kind, use_gpu, **params)

    @classmethod
    def from_matrix(
        cls,
        matrix: np.ndarray,
        ids: Sequence[str],
        kind: str = "flat",
        use_gpu: bool | str = "auto",
        nlist: int | None = None,
        nprobe: int = 32,
        train_size: int = 100_000,
        pq_m: int | None = None,
        pq_bits: int = 8,
        shards: int | str = 1,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        seed: int = 0,
    ) -> "DenseIndex":
        """Index the rows of `matrix` ([n, dim], any float dtype, a memmap is fine).

        ivf, ivfpq: `nlist` cells (`default_nlist`), trained on a random sample of `train_size` rows; `nprobe`
        cells are searched per query. ivfpq: `pq_m` sub-quantisers of `pq_bits` bits (`default_pq_m`).
        hnsw: `hnsw_m` links per node; `ef_construction` / `ef_search` trade build and search time for recall.
        flat: `shards` (an int, or "auto" = one per GPU) contiguous shards searched in parallel.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {KINDS}")
        if use_gpu not in ("auto", True, False):
            raise ValueError(f"use_gpu must be 'auto', true or false, got {use_gpu!r}")
        if use_gpu is True and not gpu_available():
            raise ValueError("use_gpu=true, but faiss has no GPU support here or CUDA is unavailable "
                             "(faiss-cpu is installed by default; install faiss-gpu for GPU search)")
        count, dim = matrix.shape
        if count != len(ids):
            raise ValueError(f"{count} rows but {len(ids)} ids")
        on_gpu = kind != "hnsw" and use_gpu in ("auto", True) and gpu_available()
        if shards != 1 and kind != "flat":
            raise ValueError(f"shards={shards!r}: only a flat index is sharded (ivf/ivfpq shrink it instead)")
        if shards == "auto":
            shards = faiss.get_num_gpus() if on_gpu else 1
        if not (isinstance(shards, int) and 1 <= shards <= max(count, 1)):
            raise ValueError(f"shards must be 'auto' or an int from 1 to the number of rows, got {shards!r}")
        nlist = nlist or default_nlist(count)
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "ivf":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.nprobe = min(nprobe, nlist)
        elif kind == "ivfpq":
            pq_m = pq_m or default_pq_m(dim)
            if dim % pq_m:
                raise ValueError(f"ivfpq: pq_m={pq_m} does not divide dim {dim}")
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, pq_bits, faiss.METRIC_INNER_PRODUCT)
            index.nprobe = min(nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction, index.hnsw.efSearch = ef_construction, ef_search
        memory = index_memory(kind, count, dim, shards, nlist, pq_m, pq_bits, hnsw_m)
        log.info("%s index over %d x %d: %.2f GB%s", kind, count, dim, memory["total"] / 1e9,
                 f", {shards} shards of {memory['per_shard'] / 1e9:.2f} GB" if shards > 1 else "")
        if kind == "flat" and shards > 1:
            return cls(cls._sharded_flat(matrix, dim, shards, on_gpu), ids, kind, on_gpu)
        if on_gpu:
            index = faiss.index_cpu_to_gpu(cls._gpu(), torch.cuda.current_device(), index)
        if kind in ("ivf", "ivfpq"):
            sample = np.sort(np.random.default_rng(seed).choice(count, size=min(train_size, count), replace=False))
            index.train(np.ascontiguousarray(matrix[sample], dtype=np.float32))
        _add(index, matrix, 0, count)
        return cls(index, ids, kind, on_gpu)

    @classmethod
    def _gpu(cls):
        cls._gpu_resources = getattr(cls, "_gpu_resources", None) or faiss.StandardGpuResources()
        return cls._gpu_resources

    @classmethod
    def _sharded_flat(cls, matrix: np.ndarray, dim: int, shards: int, on_gpu: bool) -> faiss.Index:
        """Rows split into `shards` contiguous flat indexes (successive ids), one per GPU when on GPUs."""
        sharded = faiss.IndexShards(dim, True, True)  # threaded search, successive ids
        bounds = np.linspace(0, len(matrix), shards + 1).astype(int)
        for shard, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
            part = faiss.IndexFlatIP(dim)
            if on_gpu:
                part = faiss.index_cpu_to_gpu(cls._gpu(), shard % faiss.get_num_gpus(), part)
            _add(part, matrix, start, end)
            sharded.add_shard(part)  # faiss keeps a reference to the shard
        return sharded

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray | torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: scores [n, k] float32 and ROW indices [n, k] int64, best first.

        k is clipped to the number of documents; an approximate index that finds fewer pads with row -1.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if isinstance(queries, torch.Tensor):
            queries = queries.detach().float().cpu().numpy()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return self.index.search(queries, min(k, len(self)))

    def search_run(self, query_ids: Sequence[str], query_embeddings: np.ndarray | torch.Tensor, k: int) -> Run:
        """{query id: {doc id: score}}, ready for `write_run` and `evaluate_run`."""
        if len(query_ids) != len(query_embeddings):
            raise ValueError(f"{len(query_ids)} query ids but {len(query_embeddings)} query embeddings")
        scores, rows = self.search(query_embeddings, k)
        return {qid: {self.ids[row]: float(score) for score, row in zip(query_scores, query_rows) if row >= 0}
                for qid, query_scores, query_rows in zip(query_ids, scores.tolist(), rows.tolist())}


class DenseFirstStage:
    """Dense runs computed once and cached under `cache_dir/<collection name>/`:

    - `dense-<key>/`: the document embedding store; key = hash of the encoder's document side (its fingerprint
      without the name: the document encoder's weights hash, pooling, similarity, document length, dimension),
      the dtype and the documents' content (`DocStore.fingerprint`);
    - `runs/<split>.dense-k<k>-<key>.trec`: a split's run; key = hash of the store key, the query side (the query
      encoder's weights hash and query length), the index settings and the split's queries (ids and texts).

    So another model under the same path, a corrected corpus or a changed query setting never gets a stale store
    or run. The model is loaded (on the CPU) to hash its weights, and moved to `device` only to encode.
    `encoder` holds the keyword arguments of `BiEncoder.from_pretrained` (a `conf/encoder/*` preset);
    `index` holds `DenseIndex.from_matrix`'s (kind, use_gpu, ...). A random-bert encoder learns its vocabulary
    from the collection's first 20,000 documents.
    """

    def __init__(
        self,
        encoder: Mapping,
        k: int = 100,
        cache_dir: str | os.PathLike = ".cache/lit_ir",
        index: Mapping | None = None,
        dtype: str = "float16",
        batch_size: int = 64,
        device: str = "auto",
        model_cache_dir: str | os.PathLike | None = None,
    ):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.encoder_config = _plain(encoder)
        if not self.encoder_config.get("path"):
            raise ValueError("encoder.path is required (a model name, alias or folder; see conf/encoder/)")
        self.index_config = {"kind": "flat", **_plain(index or {})}
        if self.index_config["kind"] not in KINDS:
            raise ValueError(f"unknown index kind {self.index_config['kind']!r}; choose one of {KINDS}")
        self.k, self.cache_dir, self.dtype, self.batch_size = k, Path(cache_dir), dtype, batch_size
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.model_cache_dir = model_cache_dir  # where random-bert models are built (resolve_model's cache_dir)
        self._encoder: BiEncoder | None = None
        self._sides: tuple[dict, dict] | None = None  # the loaded encoder's (document side, query side)
        self._index: tuple[Path, DenseIndex] | None = None

    def _load(self, collection: Collection) -> BiEncoder:
        if self._encoder is None:
            vocab_texts = None
            if RANDOM_BERT.match(str(self.encoder_config["path"])):
                docs = collection.docs()
                vocab_texts = [docs[doc_id] for _, doc_id in zip(range(VOCAB_DOCS), docs)]
            encoder = BiEncoder.from_pretrained(**self.encoder_config, cache_dir=self.model_cache_dir,
                                                vocab_texts=vocab_texts).eval()
            # what the embeddings depend on: the weights, not the name they were loaded under
            document_side = {key: value for key, value in encoder.fingerprint().items() if key != "model"}
            query_side = {"weights_sha": document_side["weights_sha"] if encoder.shared
                          else weights_sha(encoder.query_encoder), "query_max_length": encoder.query_max_length,
                          "query_token_type": encoder.query_token_type}
            self._encoder, self._sides = encoder, (document_side, query_side)
        return self._encoder

    def encoder(self, collection: Collection) -> BiEncoder:
        """The bi-encoder, on `device`."""
        return self._load(collection).to(self.device)

    def store_path(self, collection: Collection) -> Path:
        """Where this encoder's embeddings of `collection` live (what `python -m lit_ir.encode` writes too)."""
        self._load(collection)
        key = short_hash(self._sides[0], self.dtype, collection.docs().fingerprint())
        return self.cache_dir / safe_name(collection.name) / f"dense-{key}"

    def encode_collection(self, collection: Collection, overwrite: bool = False) -> EmbeddingStore:
        """The collection's document store, encoded (or resumed) if needed."""
        return encode_documents(self.encoder(collection), collection.docs(), self.store_path(collection),
                                dtype=self.dtype, batch_size=self.batch_size, overwrite=overwrite)

    def __call__(self, collection: Collection, split: str) -> Run:
        queries = collection.queries(split)
        store_path = self.store_path(collection)
        run_key = short_hash(store_path.name, self._sides[1], self.index_config, queries_fingerprint(queries))
        run_path = store_path.parent / "runs" / f"{safe_name(split)}.dense-k{self.k}-{run_key}.trec"
        if run_path.is_file():
            log.info("reading the cached dense run of %s/%s from %s", collection.name, split, run_path)
            run = read_run(run_path)
        else:
            store = self.encode_collection(collection)
            index = self._load_index(store)
            start = time.perf_counter()
            query_ids = list(queries)
            embeddings = encode_texts(self.encoder(collection), [queries[q] for q in query_ids], "query",
                                      self.batch_size)
            run = index.search_run(query_ids, embeddings, self.k)
            log.info("encoded and searched %d queries of %s/%s in %.1f s", len(queries), collection.name, split,
                     time.perf_counter() - start)
            write_run(run, run_path, tag="dense")
            log.info("wrote %s", run_path)
        return candidates_for_split(run, queries, set(collection.docs()), source=str(run_path))

    def _load_index(self, store: EmbeddingStore) -> DenseIndex:
        if self._index is None or self._index[0] != store.path:
            start = time.perf_counter()
            self._index = (store.path, DenseIndex.build(store, **self.index_config))
            log.info("built a %s index of %d documents in %.1f s", self.index_config["kind"], len(store),
                     time.perf_counter() - start)
        return self._index[1]


def _plain(config: Mapping) -> dict:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)
