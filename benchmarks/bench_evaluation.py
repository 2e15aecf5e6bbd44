"""Speed and agreement of lit_ir's evaluation beside ranx, pytrec_eval and ir-measures. Prints figures; not a test.

    python benchmarks/bench_evaluation.py [--queries 7000] [--depth 1000]

A synthetic run (random, untied scores) and random graded qrels (0-3, 10 judged docs per query, 7 of them
retrieved, at least one relevant), as dicts (what `read_run` / `read_qrels` return). "cold" runs in a new
process with an empty NUMBA_CACHE_DIR, so ranx's first call pays its JIT compilation; "cached" is a new process
whose numba cache is already filled; "warm" repeats the call in this process (best of 3). lit_ir's metrics are
numpy (no JIT); "qrels cached" is lit_ir with the qrels already as arrays, as `collection_qrels` keeps them per
collection and split. "ranx kernels on arrays" builds ranx's numba inputs from lit_ir's arrays (no dicts) and
calls ranx's metric functions: the fastest ranx can be fed. Needs the `bench` extra (ir-measures, pytrec-eval-terrier).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lit_ir-numba-cache"))

import numpy as np  # noqa: E402
from numba.core.errors import NumbaTypeSafetyWarning  # noqa: E402

warnings.filterwarnings("ignore", category=NumbaTypeSafetyWarning)  # emitted once while ranx compiles

METRICS = ["mrr@10", "ndcg@10", "map", "recall@1000"]
JUDGED_PER_QUERY = 10
RETRIEVED_JUDGED = 7


def synthetic(queries: int, depth: int, seed: int = 0) -> tuple[dict, dict]:
    """(run, qrels) with string ids, as read from files."""
    rng = np.random.default_rng(seed)
    run, qrels = {}, {}
    for q in range(queries):
        ids = np.unique(rng.integers(0, 10_000_000, size=depth + JUDGED_PER_QUERY + 50))
        ids = rng.permutation(ids)[: depth + JUDGED_PER_QUERY - RETRIEVED_JUDGED]
        retrieved, unretrieved = ids[:depth], ids[depth:]
        run[f"q{q}"] = {f"d{n}": s for n, s in zip(retrieved.tolist(), rng.random(depth).tolist(), strict=True)}
        judged = np.concatenate([rng.choice(retrieved, RETRIEVED_JUDGED, replace=False), unretrieved])
        grades = rng.integers(0, 4, size=JUDGED_PER_QUERY)
        grades[rng.integers(JUDGED_PER_QUERY)] = rng.integers(1, 4)
        qrels[f"q{q}"] = {f"d{n}": g for n, g in zip(judged.tolist(), grades.tolist(), strict=True)}
    return run, qrels


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def best_of(repeats: int, function, *args) -> float:
    return min(timed(function, *args)[0] for _ in range(repeats))


def lit_ir_scores(run, qrels):
    from lit_ir.evaluation import per_query_scores

    return per_query_scores(run, qrels, METRICS)


def lit_ir_cached_qrels(run, judged):
    from lit_ir.evaluation import per_query_scores

    return per_query_scores(run, judged, METRICS)


def ranx_dict_means(run, qrels):
    import ranx

    return ranx.evaluate(qrels, run, METRICS)


def ranx_array_scores(run, qrels):
    """ranx's metric kernels on inputs built from arrays: per query, the ranking as (judged doc number or -1, score)
    rows and the qrels as (doc number, grade) rows sorted by grade."""
    import pandas as pd
    from numba.typed import List as TypedList
    from ranx.metrics import metric_switch

    from lit_ir.evaluation import JudgedQrels, RankedJudgments, evaluated_query_ids, parse_metric

    judged = JudgedQrels.from_qrels(qrels)
    ranked = RankedJudgments.from_run(run, judged)
    ranx_qrels, ranx_run = TypedList(), TypedList()
    for i in range(len(judged)):
        start, end = judged.offsets[i], judged.offsets[i + 1]
        number = np.arange(end - start, dtype=np.float64)
        ranx_qrels.append(np.stack([number, judged.grades[start:end].astype(np.float64)], axis=1))
        rows = np.full((ranked.retrieved[i], 2), -1.0)
        rows[:, 1] = -np.arange(ranked.retrieved[i])  # any descending score: the rows are in rank order
        retrieved = ranked.rank[start:end] < ranked.retrieved[i]
        rows[ranked.rank[start:end][retrieved], 0] = number[retrieved]
        ranx_run.append(rows)
    specs = [parse_metric(metric) for metric in METRICS]
    scores = {s.name: metric_switch(s.base)(ranx_qrels, ranx_run, s.cutoff, s.level) for s in specs}
    return pd.DataFrame(scores, index=evaluated_query_ids(judged))


def worker(args) -> None:
    """Run in a child process: time the import and two calls, print JSON."""
    import_seconds, _ = timed(__import__, "lit_ir.evaluation")

    run, qrels = synthetic(args.queries, args.depth)
    function = {"lit_ir": lit_ir_scores, "ranx": ranx_dict_means, "ranx-arrays": ranx_array_scores}[args.worker]
    first, _ = timed(function, run, qrels)
    second, _ = timed(function, run, qrels)
    print(json.dumps({"import": import_seconds, "first": first, "second": second}))


def child(kind: str, args, cache_dir: str) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--queries", str(args.queries), "--depth", str(args.depth)]
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def pytrec_eval_scores(run, qrels) -> dict[str, dict[str, float]]:
    import pytrec_eval

    from lit_ir.data.trec import rank_documents

    # trec_eval's recip_rank has no cutoff: MRR@10 is recip_rank on the top 10 (trec_eval order).
    top10 = {qid: dict(rank_documents(docs)[:10]) for qid, docs in run.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map", "recall.1000"}).evaluate(run)
    cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    names = {"ndcg@10": "ndcg_cut_10", "map": "map", "recall@1000": "recall_1000"}
    return {
        qid: {"mrr@10": cut[qid]["recip_rank"], **{m: full[qid][name] for m, name in names.items()}} for qid in full
    }


def ir_measures_scores(run, qrels) -> dict[str, dict[str, float]]:
    import ir_measures
    from ir_measures import AP, RR, R, nDCG

    # Named providers, so that ir-measures cannot pick ranx and compare ranx with itself.
    names = {RR @ 10: "mrr@10", nDCG @ 10: "ndcg@10", AP: "map", R @ 1000: "recall@1000"}
    scores: dict[str, dict[str, float]] = {}
    for provider, measures in [(ir_measures.msmarco, [RR @ 10]), (ir_measures.pytrec_eval, [nDCG @ 10, AP, R @ 1000])]:
        for metric in provider.iter_calc(measures, qrels, run):
            scores.setdefault(metric.query_id, {})[names[metric.measure]] = metric.value
    return scores


def max_abs_diff(ours, theirs: dict[str, dict[str, float]], qids) -> dict[str, float]:
    return {m: max(abs(ours.loc[qid, m] - theirs[qid][m]) for qid in qids) for m in METRICS}


def float32_tied_queries(run) -> set[str]:
    """Queries with scores that differ in float64 but tie in float32, the precision trec_eval keeps them in."""
    return {qid for qid, docs in run.items() if len(set(np.float32(list(docs.values())).tolist())) < len(docs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=7000)
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--worker", choices=["lit_ir", "ranx", "ranx-arrays"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from importlib.metadata import version

    import numba

    n = args.queries
    generate_seconds, (run, qrels) = timed(synthetic, n, args.depth)
    relevant = sum(g >= 1 for docs in qrels.values() for g in docs.values())
    print(
        f"synthetic run: {n:,} queries x {args.depth:,} docs = {n * args.depth:,} pairs "
        f"(built in {generate_seconds:.1f} s); qrels: {n * JUDGED_PER_QUERY:,} judgments, {relevant:,} relevant"
    )
    print(
        f"metrics: {', '.join(METRICS)}; ranx {version('ranx')}, {os.cpu_count()} CPUs, "
        f"numba threads {numba.config.NUMBA_NUM_THREADS}\n"
    )

    from lit_ir.evaluation import JudgedQrels

    rows, cold_seconds = [], {}
    labels = {"lit_ir": "lit_ir per_query_scores", "ranx": "ranx.evaluate(dicts)", "ranx-arrays": "ranx kernels on arrays"}
    for kind, label in labels.items():
        with tempfile.TemporaryDirectory() as cache_dir:
            cold = child(kind, args, cache_dir)
            cached = child(kind, args, cache_dir)
        cold_seconds[kind] = cold["first"]
        rows.append((f"{label}: cold, new process, empty numba cache", cold["first"]))
        rows.append((f"{label}: new process, numba cache filled", cached["first"]))
        print(f"import lit_ir.evaluation: {cold['import']:.2f} s cold, {cached['import']:.2f} s cached ({kind} child)")

    lit_ir_scores(run, qrels), ranx_dict_means(run, qrels), ranx_array_scores(run, qrels)  # fill the JIT first
    judged = JudgedQrels.from_qrels(qrels)
    warm = best_of(3, lit_ir_scores, run, qrels)
    rows.append(("lit_ir per_query_scores: warm, same process (best of 3)", warm))
    rows.append(("lit_ir per_query_scores, qrels cached: warm (best of 3)", best_of(3, lit_ir_cached_qrels, run, judged)))
    rows.append(("ranx.evaluate(dicts): warm, same process (best of 3)", best_of(3, ranx_dict_means, run, qrels)))
    rows.append(("ranx kernels on arrays: warm, same process (best of 3)", best_of(3, ranx_array_scores, run, qrels)))
    pytrec_seconds, pytrec = timed(pytrec_eval_scores, run, qrels)
    rows.append(("pytrec_eval (C trec_eval; incl. top-10 cut for MRR@10)", pytrec_seconds))
    ir_measures_seconds, ir_measures_result = timed(ir_measures_scores, run, qrels)
    rows.append(("ir-measures (msmarco RR@10 + pytrec_eval provider)", ir_measures_seconds))

    print(f"\n{'':70} {'seconds':>8} {'queries/s':>10}")
    for label, seconds in rows:
        print(f"{label:70} {seconds:8.2f} {n / seconds:10,.0f}")
    print(f"\nlit_ir vs pytrec_eval: {pytrec_seconds / warm:.1f}x warm, {pytrec_seconds / cold_seconds['lit_ir']:.1f}x cold; "
          f"ranx kernels on arrays: {pytrec_seconds / cold_seconds['ranx-arrays']:.1f}x cold")

    ours = lit_ir_scores(run, qrels)
    ranx_means = ranx_dict_means(run, qrels)
    ranx_arrays = ranx_array_scores(run, qrels)
    tied = float32_tied_queries(run)
    untied = [qid for qid in ours.index if qid not in tied]
    print(f"\nagreement with lit_ir, max |difference| per query ({len(tied):,} of {n:,} queries have scores that tie")
    print("only in float32, which trec_eval re-orders by doc id: shown apart)")
    print(f"{'':36}" + "".join(f"{m:>13}" for m in METRICS))
    for peer, theirs in [("pytrec_eval", pytrec), ("ir-measures", ir_measures_result)]:
        for subset, qids in [("all queries", ours.index), ("no float32 ties", untied)]:
            diffs = max_abs_diff(ours, theirs, qids)
            print(f"{f'{peer}, {subset}':36}" + "".join(f"{diffs[m]:13.2e}" for m in METRICS))
    print(f"{'ranx kernels, all queries':36}" + "".join(f"{(ours[m] - ranx_arrays[m]).abs().max():13.2e}" for m in METRICS))
    print(f"{'ranx.evaluate, means':36}" + "".join(f"{abs(ours[m].mean() - ranx_means[m]):13.2e}" for m in METRICS))
    print("\nlit_ir means: " + ", ".join(f"{m} {ours[m].mean():.4f}" for m in METRICS))


if __name__ == "__main__":
    main()
