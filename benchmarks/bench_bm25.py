"""Speed of lit_ir's BM25 (bm25s) beside rank_bm25, and its nDCG@10 on Cranfield. Prints figures; not a test.

    python benchmarks/bench_bm25.py [--docs 100000] [--queries 1000] [--rank-bm25-queries 100]

(a) Cranfield (1,400 docs; the 150 train+dev queries; nDCG@10 on qrels/dev.tsv), English stemming and stopwords.
(b) A synthetic corpus: Zipfian vocabulary (s = 1.07, 50k terms), Poisson(60) terms per document; each query is
    2-6 terms drawn from a random document. No stemming or stopwords.
Both libraries get the same terms (lit_ir's Analyzer), BM25 k1 = 0.9, b = 0.4, top k = 100. Indexing includes the
analysis of the texts, search includes the analysis of the queries and the top-k selection. rank_bm25 scans every
document for every query term, so on (b) it is timed on the first --rank-bm25-queries queries only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lit_ir-numba-cache"))
os.environ.setdefault("DISABLE_TQDM", "1")

import numpy as np  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from lit_ir.retrieval.bm25 import Analyzer, BM25Index  # noqa: E402

CRANFIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "cranfield"
K, K1, B = 100, 0.9, 0.4


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def rank_bm25_index(texts: list[str], analyzer: Analyzer) -> BM25Okapi:
    return BM25Okapi([analyzer(text) for text in texts], k1=K1, b=B)


def rank_bm25_search(model: BM25Okapi, doc_ids: list[str], queries: dict[str, str], analyzer: Analyzer) -> dict:
    run = {}
    for qid, text in queries.items():
        scores = model.get_scores(analyzer(text))
        top = np.argpartition(-scores, K)[:K] if len(scores) > K else np.arange(len(scores))
        run[qid] = {doc_ids[i]: float(scores[i]) for i in top if scores[i] > 0}
    return run


def zipf_corpus(docs: int, queries: int, seed: int = 0) -> tuple[list[str], list[str], dict[str, str]]:
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"t{i}" for i in range(50_000)])
    probabilities = 1 / np.arange(1, len(vocabulary) + 1) ** 1.07
    lengths = rng.poisson(60, docs)
    terms = vocabulary[rng.choice(len(vocabulary), size=lengths.sum(), p=probabilities / probabilities.sum())]
    texts = [" ".join(doc) for doc in np.split(terms, np.cumsum(lengths)[:-1])]
    query_texts = {}
    for q, source in enumerate(rng.integers(0, docs, queries)):
        words = texts[source].split() or ["t0"]
        query_texts[f"q{q}"] = " ".join(rng.choice(words, size=rng.integers(2, 7)))
    return [f"d{i}" for i in range(docs)], texts, query_texts


def row(label: str, seconds: float, count: int, unit: str) -> None:
    print(f"  {label:58} {seconds:8.2f} s {count / seconds:12,.0f} {unit}/s")


def bench_search(index: BM25Index, queries: dict[str, str], first_in_process: bool) -> None:
    n = len(queries)
    for threads in (1, 2):
        row(
            f"bm25s numpy, {threads} thread(s)",
            timed(index.search, queries, K, n_threads=threads, backend="numpy")[0],
            n,
            "queries",
        )
    first, _ = timed(index.search, queries, K, backend="numba")
    if first_in_process:
        row("bm25s numba, 1 thread: first call (incl. JIT compile)", first, n, "queries")
    row("bm25s numba, 1 thread: compiled", timed(index.search, queries, K, backend="numba")[0], n, "queries")
    index.search(queries, K, n_threads=2, backend="numba")  # compiles the parallel kernel
    row(
        "bm25s numba, 2 threads: compiled",
        timed(index.search, queries, K, n_threads=2, backend="numba")[0],
        n,
        "queries",
    )


def cranfield() -> None:
    from lit_ir.data.collections import BeirCollection
    from lit_ir.evaluation import evaluate_run

    collection = BeirCollection(CRANFIELD)
    docs = collection.docs()
    doc_ids, texts = list(docs), list(docs.values())
    queries = {**collection.queries("train"), **collection.queries("dev")}
    analyzer = Analyzer("english", "en")
    print(f"(a) Cranfield: {len(doc_ids):,} docs, {len(queries)} queries, k={K}")
    seconds, index = timed(BM25Index.build, doc_ids, texts, k1=K1, b=B)
    row("index: bm25s (lit_ir BM25Index.build)", seconds, len(doc_ids), "docs")
    seconds, model = timed(rank_bm25_index, texts, analyzer)
    row("index: rank_bm25 BM25Okapi", seconds, len(doc_ids), "docs")
    bench_search(index, queries, first_in_process=True)
    seconds, peer_run = timed(rank_bm25_search, model, doc_ids, queries, analyzer)
    row("rank_bm25 get_scores + top-k", seconds, len(queries), "queries")

    dev = collection.queries("dev")
    qrels = collection.qrels("dev")
    ours = evaluate_run(index.search(dev, K), qrels, ["ndcg@10"])["ndcg@10"]
    theirs = evaluate_run({qid: peer_run[qid] for qid in dev}, qrels, ["ndcg@10"])["ndcg@10"]
    print(f"  nDCG@10 on dev ({len(dev)} queries): bm25s (Lucene BM25) {ours:.4f}, rank_bm25 (Okapi BM25) {theirs:.4f}")


def synthetic(docs: int, queries: int, peer_queries: int) -> None:
    seconds, (doc_ids, texts, query_texts) = timed(zipf_corpus, docs, queries)
    lengths = [len(text.split()) for text in texts]
    print(
        f"\n(b) synthetic Zipf corpus: {docs:,} docs ({np.mean(lengths):.1f} terms/doc), {queries:,} queries, "
        f"k={K} (generated in {seconds:.1f} s)"
    )
    analyzer = Analyzer(None, None)
    seconds, index = timed(BM25Index.build, doc_ids, texts, k1=K1, b=B, stemmer=None, stopwords=None)
    row("index: bm25s (lit_ir BM25Index.build)", seconds, docs, "docs")
    seconds, model = timed(rank_bm25_index, texts, analyzer)
    row("index: rank_bm25 BM25Okapi", seconds, docs, "docs")
    with tempfile.TemporaryDirectory() as folder:
        row("bm25s save", timed(index.save, Path(folder) / "index")[0], docs, "docs")
        row("bm25s load", timed(BM25Index.load, Path(folder) / "index")[0], docs, "docs")
    bench_search(index, query_texts, first_in_process=False)
    subset = dict(list(query_texts.items())[:peer_queries])
    row(
        f"rank_bm25 get_scores + top-k ({len(subset)} queries)",
        timed(rank_bm25_search, model, doc_ids, subset, analyzer)[0],
        len(subset),
        "queries",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rank-bm25-queries", type=int, default=100)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs\n")
    cranfield()
    synthetic(args.docs, args.queries, args.rank_bm25_queries)


if __name__ == "__main__":
    main()
