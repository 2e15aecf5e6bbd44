"""Speed and memory of SIR training steps, per version. Prints figures; not a test.

    HF_HUB_OFFLINE=1 python benchmarks/bench_sir.py [--models random-bert-64x2 minilm] [--versions v0 v1 v3 ...]
        [--levels 16 8 4] [--max-length 128] [--blocks-per-step 4] [--chunk-size 16] [--checkpointing off on]
        [--steps 3] [--device auto|cpu|cuda]
    make bench-sir                      # the defaults below, on the CPU
    make bench-sir-paper                # blocks of 88 -> 48 -> 16 x 512 tokens (on a GPU: bf16, checkpointing)

One step is SIRModule.training_step (tokenise the block once, run the version's levels in chunks, Top/Random
selection, the version's loss) + backward + AdamW step, on `--blocks-per-step` blocks of 1 positive + levels[0] - 1
random corpus documents (only the lengths matter for speed). v1/v2 are timed in their last stage, the costliest:
the frozen compressors select without gradient, then the classifier trains; v2's step is v1's (only the init
differs), so it is not repeated. Blocks/s is the median over --repeats timed blocks of --steps steps, after one
warm-up step.

Memory: on CUDA, the peak of torch.cuda.max_memory_allocated during the timed steps (bf16 autocast, as
trainer=gpu's precision bf16-mixed). On the CPU, every (model, version, checkpointing) runs in its own process and
reports its peak resident memory (ru_maxrss) and the growth over the resident size just before the first step,
i.e. mostly activations and optimizer state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

from bench_cross_encoder import (  # noqa: E402
    TextPool,
    cranfield_pool,
    median_seconds,
    print_environment,
    quiet_stdout,
    reset_peak_memory,
    synchronize,
    toy_pool,
)
from lit_ir.data.rerank import GroupBatch  # noqa: E402
from lit_ir.models.hub import resolve_model  # noqa: E402
from lit_ir.modules.sir import SIRModule  # noqa: E402

VERSIONS = {  # label -> SIRModule arguments
    "v0": {"strategy": "v0", "selection": "random"},
    "v1": {"strategy": "v1", "selection": "top"},
    "v1-random": {"strategy": "v1", "selection": "random"},
    "v3": {"strategy": "v3", "selection": "top"},
    "v3-random": {"strategy": "v3", "selection": "random"},
    "v4": {"strategy": "v4", "selection": "top"},
}


def sample_blocks(pool: TextPool, blocks: int, width: int, rng: random.Random) -> GroupBatch:
    indices = rng.sample(range(len(pool.queries)), blocks)
    return GroupBatch(queries=[pool.queries[i] for i in indices],
                      docs=[[rng.choice(pool.positives[i]), *rng.sample(pool.docs, width - 1)] for i in indices])


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(args: argparse.Namespace, model_name: str, version: str, checkpointing: bool,
            device: torch.device, pool: TextPool | None = None) -> dict:
    """Time one configuration in this process; returns its figures. `pool`: the texts (default: Cranfield's for
    MiniLM, the toy collection's otherwise)."""
    with tempfile.TemporaryDirectory(prefix="bench-sir-") as folder:
        toy = toy_pool(Path(folder))
        pool = pool or (cranfield_pool() if model_name == "minilm" else None) or toy
        with quiet_stdout():
            path = resolve_model(model_name, cache_dir=Path(folder) / "cache", vocab_texts=toy.docs + toy.queries)
        levels = list(args.levels)
        settings = dict(VERSIONS[version])
        if settings["strategy"] == "v0":
            levels = levels[:1]  # V0: the whole block of random negatives, one level
        module = SIRModule(str(path), levels=levels, chunk_size=args.chunk_size, gradient_checkpointing=checkpointing,
                           max_length=args.max_length, max_query_length=32, init_seed=0, **settings)
        module.configure_model()
        module.to(device)
        if module.sequential:  # the last stage: frozen compressors select, the classifier trains
            module.stage = module.num_stages - 1
            module._set_trainable()
        module.log = lambda *a, **k: None  # no trainer to log to
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
        rng = random.Random(0)
        batches = [sample_blocks(pool, args.blocks_per_step, args.levels[0], rng)
                   for _ in range(1 + args.steps * args.repeats)]

        def step(batch: GroupBatch) -> None:
            module.ranker.train()
            with autocast(device):
                loss = module.training_step(batch, 0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        before = resident_mib()
        step(batches[0])  # warm-up: also creates AdamW's state
        reset_peak_memory(device)
        timed = batches[1:]
        seconds = median_seconds(lambda r: [step(b) for b in timed[r * args.steps:(r + 1) * args.steps]], device,
                                 args.repeats)
        synchronize(device)
        figures = {"model": model_name, "version": version, "checkpointing": checkpointing, "device": device.type,
                   "levels": levels, "blocks_per_s": args.steps * args.blocks_per_step / seconds,
                   "s_per_step": seconds / args.steps}
        if device.type == "cuda":
            figures["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            figures["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            figures["growth_mib"] = figures["peak_mib"] - before
        return figures


def print_row(figures: dict) -> None:
    memory = f"peak {figures['peak_mib']:8,.0f} MiB"
    if "growth_mib" in figures:
        memory = f"peak RSS {figures['peak_mib']:6,.0f} MiB (+{figures['growth_mib']:5,.0f} over the step's start)"
    print(f"  {figures['model']:17} {figures['version']:10} ckpt={'on ' if figures['checkpointing'] else 'off'} "
          f"levels {str(figures['levels']):15} {figures['blocks_per_s']:8.2f} blocks/s "
          f"({figures['s_per_step']:6.2f} s/step)  {memory}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["random-bert-64x2", "minilm"])
    parser.add_argument("--versions", nargs="+", default=list(VERSIONS), choices=list(VERSIONS))
    parser.add_argument("--levels", nargs="+", type=int, default=[16, 8, 4])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--blocks-per-step", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads on the CPU (1: threads competing with other jobs for 2 cores "
                             "made 2-thread steps 5-30x slower and erratic)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # model/version/checkpointing/device
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    if args.child:
        model_name, version, checkpointing, device = args.child.split("/")
        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args, model_name, version, checkpointing == "on", torch.device(device))))
        return

    print_environment()
    print(f"blocks of {args.levels[0]} (levels {args.levels}), {args.blocks_per_step} blocks/step, max_length "
          f"{args.max_length}, chunks of {args.chunk_size} pairs, {args.threads} torch thread(s) on the CPU")
    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cuda"] if cuda else ["cpu"]}[args.device]
    start = time.perf_counter()
    passthrough = sys.argv[1:]
    for device in devices:
        for model_name in args.models:
            for version in args.versions:
                for checkpointing in args.checkpointing:
                    child = f"{model_name}/{version}/{checkpointing}/{device}"
                    # a process per configuration: its own peak memory, whatever ran before
                    result = subprocess.run([sys.executable, __file__, *passthrough, "--child", child],
                                            capture_output=True, text=True, check=False)
                    if result.returncode != 0:
                        print(f"  {child}: failed\n{result.stderr[-2000:]}")
                        continue
                    print_row(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
