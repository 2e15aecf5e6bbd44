"""Speed of CODER: training queries/s (split into data and compute time), reranking ms/query for 1,000 candidates,
and peak memory. Prints figures; not a test.

    HF_HUB_OFFLINE=1 python benchmarks/bench_coder.py [--model minilm] [--docs 100000] [--candidates 1000]
        [--batch 32] [--steps 10] [--device auto|cpu|cuda] [--loss kl|max_margin] [--scorer dot|transformer]
        [--placement auto|pinned] [--bf16]

The code measured is the module's own (`CoderModule.gather`, `.score`, its loss) on a `--docs` x 384 fp16 store of
random unit vectors, loaded as `EmbeddingStore.to_tensor` places it (on the GPU when it fits, else pinned CPU
memory). Each training query has `--candidates` random candidate rows plus one positive, shuffled in, as
`TrainListDataset` builds them. Queries are Cranfield's (toy-like filler text when it is absent).

- data: building the lists and the batch (`__getitem__` + `collate`), the copy to the device, and gathering the
  [batch, N, dim] candidate embeddings;
- compute: query encoding, scoring, loss, backward and the optimizer step (training), or encoding and scoring
  (reranking, in inference mode).

One warm-up step is not timed; figures are medians over --steps. Wall-clock: other processes make them noisy (the
load average is printed). On a CUDA machine the GPU path runs with synchronisation around each timed part.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from lit_ir.data.coder import RerankListDataset, TrainListDataset, TrainQuery  # noqa: E402
from lit_ir.data.embedding_store import EmbeddingStoreWriter  # noqa: E402
from lit_ir.models.candidate_scorer import DotProductScorer, TransformerScorer  # noqa: E402
from lit_ir.modules.coder import CoderModule  # noqa: E402

CRANFIELD_QUERIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cranfield" / "queries.jsonl"
PRESETS = {"minilm": {"pooling": "mean", "similarity": "cosine"}}


def query_texts(count: int) -> list[str]:
    if CRANFIELD_QUERIES.is_file():
        texts = [json.loads(line)["text"] for line in CRANFIELD_QUERIES.read_text().splitlines() if line.strip()]
    else:
        texts = [f"what is the effect of word{i} on the pressure of word{i + 1} flow" for i in range(count)]
    return [texts[i % len(texts)] for i in range(count)]


def random_store(path: Path, count: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    writer = EmbeddingStoreWriter(path, [f"d{i}" for i in range(count)], dim, {"model": "random", "dim": dim})
    for start in range(0, count, 65_536):
        block = rng.standard_normal((min(65_536, count - start), dim), dtype=np.float32)
        writer.write(start, block / np.linalg.norm(block, axis=1, keepdims=True))
    return writer.finalize()


class Timer:
    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        self._sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.seconds = time.perf_counter() - self.start

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def measure(encoder: dict, docs: int, dim: int, candidates: int, batch: int, steps: int, device: torch.device,
            loss: str = "kl", scorer: str = "dot", placement: str = "auto", bf16: bool = False) -> dict:
    """Training and reranking figures of one setting. placement: auto (where `EmbeddingStore.to_tensor` puts the
    matrix: the device when it fits), pinned (pinned CPU memory, as for a store too large for the GPU).
    bf16: under bf16 autocast, as trainer=gpu's bf16-mixed runs the steps."""
    scorer_factory = DotProductScorer if scorer == "dot" else (lambda dim: TransformerScorer(dim=dim))
    module = CoderModule(encoder=encoder, scorer=scorer_factory, loss=loss)
    module.configure_model()
    if module.model.dim != dim:
        raise SystemExit(f"--dim {dim} does not match {encoder['path']}'s dimension {module.model.dim}")
    module.to(device)
    precision = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda" else nullcontext()
    figures = {"encoder": encoder["path"], "docs": docs, "dim": dim, "candidates": candidates, "batch": batch,
               "loss": loss, "scorer": scorer, "device": str(device), "bf16_autocast": bf16 and device.type == "cuda"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = random_store(Path(tmp) / "store", docs, dim)
        target = torch.device("cpu") if placement == "pinned" else device
        module._matrix = store.to_tensor(target)  # what doc_matrix() does once the store is checked
        if placement == "pinned" and device.type == "cuda":
            module._matrix = module._matrix.pin_memory()
        figures.update(matrix=str(module._matrix.device) + (" (pinned)" if module._matrix.is_pinned() else ""),
                       store_mb=store.embeddings.nbytes / 1e6, store_seconds=time.perf_counter() - start)
        print(f"store {docs:,} x {dim} fp16 ({figures['store_mb']:.0f} MB) written and loaded in "
              f"{figures['store_seconds']:.1f} s; matrix on {figures['matrix']}")

        rng = np.random.default_rng(0)
        queries = query_texts(batch * (steps + 1))
        train_queries = [TrainQuery(f"q{i}", text, rng.choice(docs, candidates, replace=False),
                                    rng.choice(docs, 1), np.ones(1, np.float32), frozenset())
                         for i, text in enumerate(queries)]
        dataset = TrainListDataset(train_queries, docs, candidates)
        optimizer = torch.optim.RAdam(module.trainable_parameters(), lr=1.73e-6)
        module.model.train()
        data_s, compute_s = [], []
        for step in range(steps + 1):
            with Timer(device) as data:
                items = dataset.collate([dataset[i] for i in range(step * batch, (step + 1) * batch)])
                rows, mask, labels = (t.to(device, non_blocking=True) for t in (items.rows, items.mask, items.labels))
                items.rows, items.mask, items.labels = rows, mask, labels
                gathered = module.gather(rows)
            with Timer(device) as compute:
                with precision:
                    scores = module.score(module.model, items, gathered)
                    figures["score_dtype"] = str(scores.dtype).removeprefix("torch.")
                    loss_value = module.loss_fn(scores, labels, mask)
                optimizer.zero_grad(set_to_none=True)
                loss_value.backward()
                optimizer.step()
            if step:  # the first step warms up
                data_s.append(data.seconds)
                compute_s.append(compute.seconds)
        data_t, compute_t = statistics.median(data_s), statistics.median(compute_s)
        figures["training"] = {"queries_per_s": batch / (data_t + compute_t), "data_ms": data_t * 1e3,
                               "compute_ms": compute_t * 1e3, "data_share": data_t / (data_t + compute_t)}
        print(f"training, {batch} queries x {candidates + 1} candidates, {loss} loss, {scorer} scorer: "
              f"{figures['training']['queries_per_s']:.1f} queries/s; per step data {data_t * 1e3:.1f} ms "
              f"({100 * data_t / (data_t + compute_t):.0f}%), compute {compute_t * 1e3:.1f} ms; scores "
              f"{figures['score_dtype']}")

        rows_of = _Rows({q.query_id: q.candidates for q in train_queries})
        rerank = RerankListDataset([q.query_id for q in train_queries], {q.query_id: q.query for q in train_queries},
                                   rows_of, candidates)
        module.model.eval()
        data_s, compute_s = [], []
        with torch.inference_mode():
            for step in range(steps + 1):
                with Timer(device) as data:
                    items = rerank.collate([rerank[i] for i in range(step * batch, (step + 1) * batch)])
                    items.rows, items.mask = items.rows.to(device), items.mask.to(device)
                    gathered = module.gather(items.rows)
                with Timer(device) as compute:
                    with precision:
                        module.score(module.model, items, gathered).cpu()
                if step:
                    data_s.append(data.seconds)
                    compute_s.append(compute.seconds)
        data_t, compute_t = statistics.median(data_s) / batch, statistics.median(compute_s) / batch
        figures["reranking"] = {"ms_per_query": (data_t + compute_t) * 1e3, "data_ms": data_t * 1e3,
                                "compute_ms": compute_t * 1e3}
        print(f"reranking {candidates} candidates, batches of {batch} queries: "
              f"{(data_t + compute_t) * 1e3:.2f} ms/query (data {data_t * 1e3:.2f}, compute {compute_t * 1e3:.2f})")

    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    line = f"peak memory: process RSS {figures['peak_rss_mb']:.0f} MB"
    if device.type == "cuda":
        figures["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
        line += f", GPU {figures['peak_gpu_mb']:.0f} MB allocated"
    print(line)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384, help="store dimension; must match the model's")
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--loss", default="kl", choices=["kl", "max_margin"])
    parser.add_argument("--scorer", default="dot", choices=["dot", "transformer"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--placement", default="auto", choices=["auto", "pinned"],
                        help="auto: the matrix on the device when it fits; pinned: in pinned CPU memory")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA, as trainer=gpu")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f", load average {os.getloadavg()[0]:.1f}")
    measure({"path": args.model, **PRESETS.get(args.model, {})}, args.docs, args.dim, args.candidates, args.batch,
            args.steps, device, args.loss, args.scorer, args.placement, args.bf16)


class _Rows:
    """Candidate rows per query id, as CandidateStore.rows returns them."""

    def __init__(self, rows: dict[str, np.ndarray]):
        self._rows = rows

    def rows(self, query_id: str) -> np.ndarray:
        return self._rows[query_id]


if __name__ == "__main__":
    main()
