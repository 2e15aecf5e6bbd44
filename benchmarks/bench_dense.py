"""Speed of dense retrieval: document encoding (docs/s) and FAISS search (queries/s, recall vs exact). Prints
figures; not a test.

    HF_HUB_OFFLINE=1 python benchmarks/bench_dense.py [--models minilm random-bert-64x2] [--encode-docs 512]
        [--docs 100000] [--dim 384] [--queries 1000] [--k 100] [--kinds flat ivf hnsw]
        [--data gaussian clustered] [--device auto|cpu|cuda]

Encoding: `encode_texts` as `python -m lit_ir.encode` runs it (length-sorted batches of 64, inference mode,
tokenisation included), on Cranfield documents when /work/shared/data/cranfield exists (toy documents otherwise),
each model at its preset's document length (MiniLM 256 tokens, the random tiny BERT 64). One warm-up batch is not
timed. The writer's cost (fp16 memmap + fsync per 4,096 docs) is timed separately on the same embeddings.

FAISS: `--docs` random vectors, L2-normalised (so inner product = cosine, as for a cosine model), and `--queries`
more from the same distribution; exact flat search is the reference for recall@10 / recall@k of IVF (nlist
4*sqrt(n), nprobe 32) and HNSW (M 32, efConstruction 80, efSearch 128). `--data gaussian`: no structure at all, the
worst case for IVF/HNSW recall; `--data clustered`: 1,000 centres plus noise, closer to real embeddings, which
cluster by topic. Neither is real data: real recall lies between, nearer the clustered figure. Build time and
queries/s (all queries in one search call) are wall-clock, median of --repeats searches.
Timings are wall-clock: other processes on the machine (see the load average printed) make them noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network: every model here is local

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from huggingface_hub.utils import disable_progress_bars  # noqa: E402

from lit_ir.data.collections import BeirCollection  # noqa: E402
from lit_ir.data.embedding_store import EmbeddingStoreWriter  # noqa: E402
from lit_ir.data.toy import ToyCollection  # noqa: E402
from lit_ir.errors import ModelUnavailableError  # noqa: E402
from lit_ir.models.bi_encoder import BiEncoder  # noqa: E402
from lit_ir.retrieval.dense import DenseIndex, gpu_available  # noqa: E402
from lit_ir.retrieval.encoding import encode_texts  # noqa: E402

CRANFIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "cranfield"
# model -> the preset settings the experiments use (conf/encoder/minilm.yaml, conf/encoder/random.yaml)
PRESETS = {"minilm": {"pooling": "mean", "similarity": "cosine", "doc_max_length": 256},
           "random-bert": {"pooling": "mean", "similarity": "dot", "doc_max_length": 64}}


def documents(limit: int, cache: Path) -> tuple[str, list[str]]:
    if CRANFIELD.is_dir():
        collection = BeirCollection(CRANFIELD)
    else:
        collection = ToyCollection(cache / "toy")
    docs = collection.docs()
    return collection.name, [docs[doc_id] for _, doc_id in zip(range(limit), docs)]


def bench_encoding(models: list[str], n_docs: int, device: str, cache: Path) -> None:
    name, texts = documents(n_docs, cache)
    print(f"\n## document encoding: {len(texts)} {name} documents, batches of 64, device {device}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'model':<20} {'doc len':>7} {'dim':>5} {'docs/s':>9} {'write ms/4096 docs':>19}")
    for model in models:
        settings = PRESETS["random-bert" if model.startswith("random-bert") else model]
        try:
            encoder = BiEncoder.from_pretrained(model, cache_dir=cache, vocab_texts=texts, **settings).to(device)
        except ModelUnavailableError as err:
            print(f"{model:<20} skipped: {err}")
            continue
        encode_texts(encoder, texts[:64], "doc")  # warm-up
        _sync(device)
        start = time.perf_counter()
        embeddings = encode_texts(encoder, texts, "doc")
        _sync(device)
        rate = len(texts) / (time.perf_counter() - start)
        block = np.resize(embeddings, (4096, embeddings.shape[1]))
        with tempfile.TemporaryDirectory(dir=cache) as folder:
            writer = EmbeddingStoreWriter(Path(folder) / "store", [f"d{i}" for i in range(4096)], encoder.dim,
                                          encoder.fingerprint(), "float16")
            start = time.perf_counter()
            writer.write(0, block)
            write_ms = 1000 * (time.perf_counter() - start)
            writer.close()
        print(f"{model:<20} {settings['doc_max_length']:>7} {encoder.dim:>5} {rate:>9.1f} {write_ms:>19.1f}")


def unit_vectors(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray | None) -> np.ndarray:
    """Gaussian vectors, or (with `centres`) a random centre each plus Gaussian noise of half its scale."""
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    if centres is not None:
        vectors = centres[rng.integers(len(centres), size=n)] + 0.5 * vectors
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def bench_faiss(data: str, n_docs: int, dim: int, n_queries: int, k: int, kinds: list[str], use_gpu,
                repeats: int) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, dim), dtype=np.float32) if data == "clustered" else None
    docs = unit_vectors(rng, n_docs, dim, centres)
    queries = unit_vectors(rng, n_queries, dim, centres)
    ids = [f"d{i}" for i in range(n_docs)]
    what = "Gaussian" if data == "gaussian" else "clustered (1,000 centres + noise)"
    print(f"\n## FAISS inner product: {n_docs:,} x {dim} {what} unit vectors, {n_queries} queries, k={k}, "
          f"{faiss.omp_get_max_threads()} OpenMP threads, GPU FAISS: {gpu_available()}")
    print(f"{'index':<6} {'on GPU':>6} {'build s':>8} {'queries/s':>10} {'recall@10':>10} {f'recall@{k}':>10}")
    exact = None
    for kind in ["flat", *[kind for kind in kinds if kind != "flat"]]:
        start = time.perf_counter()
        index = DenseIndex.from_matrix(docs, ids, kind, use_gpu=use_gpu)
        build = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            _, rows = index.search(queries, k)
            times.append(time.perf_counter() - start)
        if exact is None:
            exact = rows
        recall = {depth: np.mean([len(np.intersect1d(a[:depth], b[:depth])) / depth for a, b in zip(rows, exact)])
                  for depth in (10, k)}
        if kind in kinds:
            print(f"{kind:<6} {str(index.on_gpu):>6} {build:>8.2f} {n_queries / statistics.median(times):>10.0f} "
                  f"{recall[10]:>10.3f} {recall[k]:>10.3f}")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["minilm", "random-bert-64x2"])
    parser.add_argument("--encode-docs", type=int, default=512)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--kinds", nargs="*", default=["flat", "ivf", "hnsw"])
    parser.add_argument("--data", nargs="*", default=["gaussian", "clustered"], choices=["gaussian", "clustered"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()  # no load reports: the random model has an unused MLM head
    disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" / "Writing model shards"
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, faiss {faiss.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
          + (f", {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""))
    with tempfile.TemporaryDirectory(prefix="bench_dense-") as cache:
        if args.models and args.encode_docs:
            bench_encoding(args.models, args.encode_docs, device, Path(cache))
    for data in args.data if args.kinds and args.docs else []:
        bench_faiss(data, args.docs, args.dim, args.queries, args.k, args.kinds,
                    "auto" if device.startswith("cuda") else False, args.repeats)


if __name__ == "__main__":
    main()
