"""Speed of CODER: training queries/s (split into data and compute time), reranking ms/query for 1,000 candidates,
and peak memory. Prints figures; not a test.

    HF_HUB_OFFLINE=1 python benchmarks/bench_coder.py [--model minilm] [--docs 100000] [--candidates 1000]
        [--batch 32] [--steps 10] [--device auto|cpu|cuda] [--loss kl|max_margin] [--scorer dot|transformer]

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
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
          + f", load average {os.getloadavg()[0]:.1f}")

    scorer = DotProductScorer if args.scorer == "dot" else (lambda dim: TransformerScorer(dim=dim))
    module = CoderModule(encoder={"path": args.model, **PRESETS.get(args.model, {})}, scorer=scorer, loss=args.loss)
    module.configure_model()
    if module.model.dim != args.dim:
        sys.exit(f"--dim {args.dim} does not match {args.model}'s dimension {module.model.dim}")
    module.to(device)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = random_store(Path(tmp) / "store", args.docs, args.dim)
        module._matrix = store.to_tensor(device)  # what doc_matrix() does once the store is checked
        print(f"store {args.docs:,} x {args.dim} fp16 ({store.embeddings.nbytes / 1e6:.0f} MB) written and loaded "
              f"in {time.perf_counter() - start:.1f} s; matrix on {module._matrix.device}"
              + (" (pinned)" if module._matrix.is_pinned() else ""))

        rng = np.random.default_rng(0)
        queries = query_texts(args.batch * (args.steps + 1))
        train_queries = [TrainQuery(f"q{i}", text, rng.choice(args.docs, args.candidates, replace=False),
                                    rng.choice(args.docs, 1), np.ones(1, np.float32), frozenset())
                         for i, text in enumerate(queries)]
        dataset = TrainListDataset(train_queries, args.docs, args.candidates)
        optimizer = torch.optim.RAdam(module.trainable_parameters(), lr=1.73e-6)
        module.model.train()
        data_s, compute_s = [], []
        for step in range(args.steps + 1):
            with Timer(device) as data:
                batch = dataset.collate([dataset[i] for i in range(step * args.batch, (step + 1) * args.batch)])
                rows, mask, labels = (t.to(device, non_blocking=True) for t in (batch.rows, batch.mask, batch.labels))
                batch.rows, batch.mask, batch.labels = rows, mask, labels
                docs = module.gather(rows)
            with Timer(device) as compute:
                loss = module.loss_fn(module.score(module.model, batch, docs), labels, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if step:  # the first step warms up
                data_s.append(data.seconds)
                compute_s.append(compute.seconds)
        data_t, compute_t = statistics.median(data_s), statistics.median(compute_s)
        print(f"training, {args.batch} queries x {args.candidates + 1} candidates, {args.loss} loss, {args.scorer} "
              f"scorer: {args.batch / (data_t + compute_t):.1f} queries/s; per step data {data_t * 1e3:.1f} ms "
              f"({100 * data_t / (data_t + compute_t):.0f}%), compute {compute_t * 1e3:.1f} ms")

        candidates = _Rows({q.query_id: q.candidates for q in train_queries})
        rerank = RerankListDataset([q.query_id for q in train_queries], {q.query_id: q.query for q in train_queries},
                                   candidates, args.candidates)
        module.model.eval()
        data_s, compute_s = [], []
        with torch.inference_mode():
            for step in range(args.steps + 1):
                with Timer(device) as data:
                    batch = rerank.collate([rerank[i] for i in range(step * args.batch, (step + 1) * args.batch)])
                    batch.rows, batch.mask = batch.rows.to(device), batch.mask.to(device)
                    docs = module.gather(batch.rows)
                with Timer(device) as compute:
                    module.score(module.model, batch, docs).cpu()
                if step:
                    data_s.append(data.seconds)
                    compute_s.append(compute.seconds)
        data_t, compute_t = statistics.median(data_s) / args.batch, statistics.median(compute_s) / args.batch
        print(f"reranking {args.candidates} candidates, batches of {args.batch} queries: "
              f"{(data_t + compute_t) * 1e3:.2f} ms/query (data {data_t * 1e3:.2f}, compute {compute_t * 1e3:.2f})")

    peak_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    line = f"peak memory: process RSS {peak_cpu:.0f} MB"
    if device.type == "cuda":
        line += f", GPU {torch.cuda.max_memory_allocated(device) / 1e6:.0f} MB allocated"
    print(line)


class _Rows:
    """Candidate rows per query id, as CandidateStore.rows returns them."""

    def __init__(self, rows: dict[str, np.ndarray]):
        self._rows = rows

    def rows(self, query_id: str) -> np.ndarray:
        return self._rows[query_id]


if __name__ == "__main__":
    main()
