import json
import logging
import math
import subprocess
import sys
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy import stats

from lit_ir.data.trec import write_qrels, write_run
from lit_ir.errors import InputError
from lit_ir.evaluation import (
    compare_runs,
    evaluate_run,
    parse_metric,
    per_query_scores,
    print_table,
    query_coverage,
    write_metrics,
)

QRELS = {
    "q1": {"d1": 3, "d2": 1, "d3": 0, "d4": 2},
    "q2": {"d5": 1, "d6": 1},
    "q3": {"d7": 2},  # its relevant document is never retrieved
    "q4": {"d8": 0},  # no relevant document at all: left out
    "q6": {"d9": 2},  # missing from the run: scores 0
}
RUN = {
    "q1": {"d3": 0.9, "d2": 0.8, "d1": 0.7, "dx": 0.6, "d4": 0.5},  # grades by rank: 0 1 3 - 2
    "q2": {"d6": 0.9, "da": 0.8, "d5": 0.7},  # grades by rank: 1 - 1
    "q3": {"db": 0.9, "dc": 0.8},
    "q4": {"d8": 1.0},
    "q5": {"d1": 1.0},  # not in the qrels: ignored
}
METRICS = ["mrr@10", "ndcg@10", "map", "map@3", "recall@3"]


def dcg(gains: list[float]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


# Worked out by hand from the tables above.
LEVEL_1 = {  # relevant = grade >= 1; evaluated queries q1, q2, q3, q6
    "q1": {
        "mrr@10": 1 / 2,
        "ndcg@10": dcg([0, 1, 3, 0, 2]) / dcg([3, 2, 1]),
        "map": (1 / 2 + 2 / 3 + 3 / 5) / 3,
        "map@3": (1 / 2 + 2 / 3) / 3,  # divided by all 3 relevant, as trec_eval's map_cut
        "recall@3": 2 / 3,
    },
    "q2": {
        "mrr@10": 1.0,
        "ndcg@10": dcg([1, 0, 1]) / dcg([1, 1]),
        "map": (1 + 2 / 3) / 2,
        "map@3": (1 + 2 / 3) / 2,
        "recall@3": 1.0,
    },
    "q3": dict.fromkeys(METRICS, 0.0),
    "q6": dict.fromkeys(METRICS, 0.0),
}
LEVEL_2 = {  # relevant = grade >= 2: q1's first relevant doc drops to rank 3, q2 has none and is left out
    "q1": {
        "mrr@10": 1 / 3,
        "ndcg@10": LEVEL_1["q1"]["ndcg@10"],  # nDCG keeps every graded gain
        "map": (1 / 3 + 2 / 5) / 2,
        "map@3": (1 / 3) / 2,
        "recall@3": 1 / 2,
    },
    "q3": dict.fromkeys(METRICS, 0.0),
    "q6": dict.fromkeys(METRICS, 0.0),
}


@pytest.mark.parametrize(("level", "expected"), [(1, LEVEL_1), (2, LEVEL_2)])
def test_metrics_match_hand_computed_values(level, expected):
    frame = per_query_scores(RUN, QRELS, METRICS, relevance_level=level)
    assert list(frame.index) == list(expected)
    assert list(frame.columns) == METRICS
    for qid, scores in expected.items():
        for metric, value in scores.items():
            assert frame.loc[qid, metric] == pytest.approx(value, abs=1e-12), (qid, metric)
    means = evaluate_run(RUN, QRELS, METRICS, relevance_level=level)
    for metric in METRICS:
        assert means[metric] == pytest.approx(np.mean([scores[metric] for scores in expected.values()]), abs=1e-12)


def test_metric_names_get_the_relevance_level_except_graded_ones():
    assert parse_metric("map@20", 2).ranx_name == "map@20-l2"
    assert parse_metric("mrr@10", 1).ranx_name == "mrr@10-l1"
    assert parse_metric("ndcg@10", 2).ranx_name == "ndcg@10-l1"
    assert parse_metric("recall@100-l3", 2).ranx_name == "recall@100-l3"  # an explicit level wins
    for bad in ["ndgc@10", "ndcg@ten", "map@0", "map-lx"]:
        with pytest.raises(InputError):
            parse_metric(bad)


def test_query_coverage_is_counted_and_logged(caplog):
    assert query_coverage(RUN, QRELS, 1).as_dict() == {
        "judged": 5,
        "evaluated": 4,
        "without_relevant": 1,
        "missing_from_run": 1,
        "not_in_qrels": 1,
    }
    with caplog.at_level(logging.WARNING):
        evaluate_run(RUN, QRELS, ["map"])
    assert "1 of 5 judged queries have no document graded >= 1" in caplog.text
    assert "1 of 4 evaluated queries are missing from the run and score 0" in caplog.text
    assert "1 run queries are not in the qrels and are ignored" in caplog.text


def test_tied_scores_are_ranked_like_trec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    qrels = {f"q{q}": {f"d{d}": int(rng.integers(0, 3)) for d in range(30)} for q in range(20)}
    # scores from a few values, so most documents tie
    run = {f"q{q}": {f"d{d}": float(rng.integers(0, 4)) for d in range(40)} for q in range(20)}
    ours = per_query_scores(run, qrels, ["ndcg@10", "map", "recall@5"])
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map", "recall.5"}).evaluate(run)
    for qid in ours.index:
        assert ours.loc[qid, "ndcg@10"] == pytest.approx(theirs[qid]["ndcg_cut_10"], abs=1e-4)
        assert ours.loc[qid, "map"] == pytest.approx(theirs[qid]["map"], abs=1e-4)
        assert ours.loc[qid, "recall@5"] == pytest.approx(theirs[qid]["recall_5"], abs=1e-4)


@pytest.mark.parametrize(
    ("run", "qrels", "kwargs", "message"),
    [
        ({}, QRELS, {}, "no documents for any"),
        ({"other": {"d1": 1.0}}, QRELS, {}, "no documents for any"),
        (RUN, {"q1": {"d1": 0}}, {}, "no query in the qrels"),
        (RUN, QRELS, {"relevance_level": 0}, "relevance_level must be >= 1"),
        (RUN, QRELS, {"metrics": ["p@10"]}, "unknown metric"),
        (RUN, QRELS, {"metrics": ["bpref@10"]}, "takes no cutoff"),
        ({**RUN, "q2": {"d6": math.nan, "d5": 1.0}}, QRELS, {}, "query 'q2': document 'd6' has a NaN score"),
    ],
)
def test_bad_evaluation_input_raises(run, qrels, kwargs, message):
    with pytest.raises(InputError, match=message):
        per_query_scores(run, qrels, **{"metrics": ["map"], **kwargs})


def ranx_reference(run, qrels, metrics, relevance_level=1):
    """ranx's own metric functions on rankings built one document at a time (lit_ir's former implementation)."""
    from numba.typed import List as TypedList
    from ranx.metrics import metric_switch

    from lit_ir.data.trec import rank_documents
    from lit_ir.evaluation import evaluated_query_ids

    qids = evaluated_query_ids(qrels, relevance_level)
    ranx_qrels, ranx_run = TypedList(), TypedList()
    for qid in qids:
        judged = sorted(qrels[qid].items(), key=lambda item: item[1], reverse=True)
        number = {docid: i for i, (docid, _) in enumerate(judged)}
        rows = [(number.get(docid, -1), score) for docid, score in rank_documents(run.get(qid, {}))]
        ranx_qrels.append(np.array([(i, grade) for i, (_, grade) in enumerate(judged)], dtype=np.float64))
        ranx_run.append(np.array(rows, dtype=np.float64).reshape(-1, 2))
    specs = [parse_metric(metric, relevance_level) for metric in metrics]
    scores = {s.name: metric_switch(s.base)(ranx_qrels, ranx_run, s.cutoff, s.level) for s in specs}
    return pd.DataFrame(scores, index=pd.Index(qids, name="query_id"))


def random_judgments(seed: int, queries: int = 60):
    """Rankings of 0-40 documents (every other query from 5 score values, so that many tie, a few empty) and
    1-15 judgments per query graded 0-3 over a 100-document pool."""
    rng = np.random.default_rng(seed)
    run, qrels = {}, {}
    for q in range(queries):
        docs = [f"d{i}" for i in rng.choice(100, size=rng.integers(0, 40), replace=False)]
        scores = rng.integers(0, 5, size=len(docs)).astype(float) if q % 2 else rng.random(len(docs))
        if docs:
            run[f"q{q}"] = dict(zip(docs, scores.tolist()))
        judged = [f"d{i}" for i in rng.choice(100, size=rng.integers(1, 16), replace=False)]
        qrels[f"q{q}"] = dict(zip(judged, rng.integers(0, 4, size=len(judged)).tolist()))
    return run, qrels


def every_metric() -> list[str]:
    from lit_ir.evaluation.metrics import BINARY_METRICS, GRADED_METRICS

    names = []
    for base in sorted((BINARY_METRICS | GRADED_METRICS) - {"bpref"}):
        for cutoff in [""] if base == "r-precision" else ["", "@1", "@5", "@20"]:
            names += [f"{base}{cutoff}", f"{base}{cutoff}-l2", f"{base}{cutoff}-l3"]
    return names


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("level", [1, 2])
def test_every_metric_equals_ranx_per_query(seed, level):
    run, qrels = random_judgments(seed)
    metrics = every_metric()
    ours = per_query_scores(run, qrels, metrics, relevance_level=level)
    theirs = ranx_reference(run, qrels, metrics, relevance_level=level)
    assert list(ours.index) == list(theirs.index)
    for metric in metrics:
        np.testing.assert_allclose(ours[metric], theirs[metric], rtol=0, atol=1e-12, err_msg=metric)
    assert (ours["ndcg@20-l2"] > 0).sum() > 10  # the data exercise the metrics, not only their zeros


def test_bpref_equals_ranx_and_trec_eval():
    """ranx's bpref is checked one query at a time: over many queries its parallel loop returns 0 for some (ranx
    0.3.21), and with no judged non-relevant document it divides by zero; trec_eval's is the fraction of relevant
    documents retrieved there, and so is ours."""
    run, qrels = random_judgments(3)
    ours = per_query_scores(run, qrels, ["bpref", "bpref-l2"])
    checked = 0
    for qid in ours.index:
        one = {qid: qrels[qid]}
        for metric, level in [("bpref", 1), ("bpref-l2", 2)]:
            relevant = sum(grade >= level for grade in qrels[qid].values())
            if not relevant:
                assert ours.loc[qid, metric] == 0.0
            elif relevant == len(qrels[qid]):  # nothing judged non-relevant
                retrieved = sum(grade >= level and doc in run.get(qid, {}) for doc, grade in qrels[qid].items())
                assert ours.loc[qid, metric] == retrieved / relevant
            else:
                assert ours.loc[qid, metric] == ranx_reference(run, one, [metric]).iloc[0, 0], (qid, metric)
                checked += 1
    assert checked > 50
    pytrec_eval = pytest.importorskip("pytrec_eval")
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"bpref"}).evaluate(run)
    for qid in ours.index:
        assert ours.loc[qid, "bpref"] == pytest.approx(theirs.get(qid, {"bpref": 0.0})["bpref"], abs=1e-12), qid


def test_metrics_equal_trec_eval_per_query():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(4)
    qrels = {f"q{q}": {f"d{d}": int(rng.integers(0, 4)) for d in rng.choice(300, 25, replace=False)} for q in range(40)}
    # distinct float32 scores (trec_eval keeps scores as float32), so that both rank every document alike
    run = {f"q{q}": dict(zip([f"d{d}" for d in rng.choice(300, 200, replace=False)],
                             (rng.permutation(200) / 8).tolist())) for q in range(40)}
    ours = per_query_scores(run, qrels, ["ndcg@10", "ndcg", "map", "recall@100", "precision@20", "r-precision"])
    measures = {"ndcg_cut.10", "ndcg", "map", "recall.100", "P.20", "Rprec"}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    names = {"ndcg@10": "ndcg_cut_10", "ndcg": "ndcg", "map": "map", "recall@100": "recall_100",
             "precision@20": "P_20", "r-precision": "Rprec"}
    for qid in ours.index:
        for ours_name, trec_name in names.items():
            assert ours.loc[qid, ours_name] == pytest.approx(theirs[qid][trec_name], abs=1e-12), (qid, ours_name)


def test_judged_qrels_are_read_once_per_collection_and_split():
    from lit_ir.evaluation import collection_qrels

    class Counting:
        reads = 0

        def qrels(self, split):
            Counting.reads += 1
            return {"dev": QRELS, "test": {"q1": {"d1": 1}}}[split]

    collection = Counting()
    first = collection_qrels(collection, "dev")
    assert collection_qrels(collection, "dev") is first and Counting.reads == 1
    assert collection_qrels(collection, "test").query_ids == ["q1"] and Counting.reads == 2
    assert collection_qrels(Counting(), "dev") is not first  # another collection object reads its own
    frame = per_query_scores(RUN, first, METRICS, relevance_level=2)  # arrays in, the same scores out
    pd.testing.assert_frame_equal(frame, per_query_scores(RUN, QRELS, METRICS, relevance_level=2))


# A system that beats the baseline on most queries, by varying amounts.
SIGNIFICANCE_QRELS = {f"q{q}": {"rel": 1} for q in range(12)}
SYSTEM = {f"q{q}": {"rel": 1.0, "x": 0.5} if q < 10 else {"x": 1.0, "rel": 0.5} for q in range(12)}
BASELINE = {f"q{q}": {**{f"n{i}": 1.0 for i in range(q % 4 + 1)}, "rel": 0.1} for q in range(12)}


def test_paired_t_test_p_values_match_scipy_and_the_formula():
    comparison = compare_runs({"base": BASELINE, "new": SYSTEM}, SIGNIFICANCE_QRELS, ["mrr@10"], baseline="base")
    new = np.array([1.0] * 10 + [0.5] * 2)  # reciprocal ranks, by hand
    base = np.array([1 / (q % 4 + 2) for q in range(12)])
    differences = new - base
    t = differences.mean() / (differences.std(ddof=1) / math.sqrt(len(differences)))
    by_formula = 2 * stats.t.sf(abs(t), df=len(differences) - 1)
    p_value = comparison.p_values["new"]["mrr@10"]
    assert p_value == pytest.approx(stats.ttest_rel(new, base).pvalue, rel=1e-12)
    assert p_value == pytest.approx(by_formula, rel=1e-9)
    assert p_value < 0.05 and comparison.is_significant("new", "mrr@10")
    assert comparison.means["base"]["mrr@10"] == pytest.approx(base.mean())
    assert comparison.means["new"]["mrr@10"] == pytest.approx(new.mean())
    assert "base" not in comparison.p_values


def test_identical_runs_have_p_value_one():
    comparison = compare_runs({"a": RUN, "b": dict(RUN)}, QRELS, ["map"], baseline="a")
    assert comparison.p_values == {"b": {"map": 1.0}}
    assert not comparison.is_significant("b", "map")


def test_unknown_baseline_is_rejected():
    with pytest.raises(InputError, match="baseline 'c'"):
        compare_runs({"a": RUN}, QRELS, ["map"], baseline="c")


def test_write_metrics_and_print_table(tmp_path):
    comparison = compare_runs({"base": BASELINE, "new": SYSTEM}, SIGNIFICANCE_QRELS, ["mrr@10", "map"], baseline="base")
    metrics_path, per_query_path = write_metrics(comparison, tmp_path / "out", extra_meta={"qrels": "q.txt"})
    written = json.loads(metrics_path.read_text())
    assert written["metrics"] == comparison.means
    assert written["p_values"] == comparison.p_values
    assert written["meta"]["relevance_level"] == 1
    assert written["meta"]["num_queries"] == 12
    assert written["meta"]["baseline"] == "base"
    assert written["meta"]["qrels"] == "q.txt"
    per_query = pd.read_csv(per_query_path, dtype={"query_id": str})
    assert list(per_query.columns) == ["system", "query_id", "mrr@10", "map"]
    assert len(per_query) == 24
    assert per_query.set_index(["system", "query_id"]).loc[("new", "q11"), "mrr@10"] == 0.5

    console = Console(file=StringIO(), width=120)
    print_table(comparison, console=console)
    text = console.file.getvalue()
    assert "base (baseline)" in text
    assert f"{comparison.means['new']['mrr@10']:.4f}†" in text
    assert "† p < 0.05 vs 'base'" in text


def test_evaluate_cli_end_to_end(tmp_path):
    write_run(RUN, tmp_path / "system.trec")
    reversed_run = {qid: {docid: -score for docid, score in docs.items()} for qid, docs in RUN.items()}
    write_run(reversed_run, tmp_path / "bm25.trec")
    write_qrels(QRELS, tmp_path / "qrels.txt")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "lit_ir.evaluate",
        f"run={tmp_path / 'system.trec'}", f"baseline={tmp_path / 'bm25.trec'}", f"qrels={tmp_path / 'qrels.txt'}",
        "metrics=[mrr@10,ndcg@10,map]", "relevance_level=2", f"hydra.run.dir={out}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"metrics:   {out / 'metrics.json'}" in result.stdout
    written = json.loads((out / "metrics.json").read_text())
    assert set(written["metrics"]) == {"system", "bm25"}
    for metric in ["mrr@10", "ndcg@10", "map"]:
        expected = np.mean([scores[metric] for scores in LEVEL_2.values()])
        assert written["metrics"]["system"][metric] == pytest.approx(expected, abs=1e-12)
    assert set(written["p_values"]) == {"system"}
    assert written["meta"]["num_queries"] == 3
    assert written["meta"]["coverage"]["system"]["missing_from_run"] == 1
    assert written["meta"]["ranx_metrics"] == {"mrr@10": "mrr@10-l2", "ndcg@10": "ndcg@10-l1", "map": "map-l2"}
    assert (out / "per_query.csv").read_text().startswith("system,query_id,mrr@10,ndcg@10,map\n")


def test_evaluate_config_names_runs_and_resolves_the_baseline(tmp_path):
    from hydra import compose, initialize_config_dir

    from lit_ir.evaluate import run_paths
    from lit_ir.utils.hydra import CONFIG_DIR

    bm25 = write_run(RUN, tmp_path / "bm25.trec")

    def paths_for(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return run_paths(compose(config_name="evaluate", overrides=["qrels=q.txt", *overrides]))

    runs = f"runs={{ce:{tmp_path}/ce.trec,first:{bm25}}}"
    assert paths_for(runs, "baseline=first") == ({"ce": f"{tmp_path}/ce.trec", "first": str(bm25)}, "first")
    assert paths_for(runs, f"baseline={bm25}")[1] == "first"  # a path already among the runs keeps its name
    assert paths_for(f"run={tmp_path}/ce.trec", f"baseline={bm25}") == (
        {"ce": f"{tmp_path}/ce.trec", "bm25": str(bm25)},
        "bm25",
    )
    with pytest.raises(InputError, match="neither a run name"):
        paths_for(runs, "baseline=bm26")
    with pytest.raises(InputError, match="no run to evaluate"):
        paths_for()


# --- TREC DL: every metric lenient and strict -------------------------------------------------------------------
DL_QRELS = {
    "q1": {"a": 1, "b": 3, "c": 2, "d": 0},
    "q2": {"e": 1, "f": 0},  # no grade-2 passage: 0 on every strict metric, as trec_eval -l2 scores it
}
DL_RERANKED = {"q1": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0, "x": 0.5}, "q2": {"e": 2.0, "f": 1.0}}
DL_EXPECTED = {  # means over q1 and q2, worked out by hand
    "ndcg@10-l1": (dcg([1, 3, 2, 0]) / dcg([3, 2, 1]) + 1.0) / 2,
    "ndcg@10-l2": (dcg([0, 3, 2]) / dcg([3, 2]) + 0.0) / 2,  # the grade-1 passage at rank 1 gains nothing
    "mrr@10-l1": (1.0 + 1.0) / 2,
    "mrr@10-l2": (1 / 2 + 0.0) / 2,
    "map-l1": (1.0 + 1.0) / 2,
    "map-l2": ((1 / 2 + 2 / 3) / 2 + 0.0) / 2,
    "recall@1000-l1": 1.0,
    "recall@1000-l2": 0.5,
}


@pytest.mark.parametrize(("collection", "split"), [("trec_dl_2019", "dl19"), ("trec_dl_2020", "dl20"),
                                                   ("msmarco_passage", "dl19"), ("msmarco_document", "dl20")])
def test_trec_dl_reports_every_metric_lenient_and_strict(tmp_path, collection, split):
    """The end-of-run report of a DL collection config: one column per metric and reading, strict nDCG included."""
    from hydra import compose, initialize_config_dir

    from lit_ir.reporting import report_test_splits
    from lit_ir.utils.hydra import CONFIG_DIR

    run_dir = tmp_path / "runs"
    write_run(DL_RERANKED, run_dir / f"{split}.rerank.trec")
    overrides = [f"collection={collection}", f"collection.test_splits=[{split}]", f"model.run_dir={run_dir}",
                 "collection.metrics=[ndcg@10,mrr@10,map,recall@1000]"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)

    class DeepLearningTrack:
        name = collection

        def qrels(self, asked):
            assert asked == split
            return DL_QRELS

    class DataModule:
        collection, test_splits = DeepLearningTrack(), [split]

        def first_stage_run(self, asked):
            return {qid: {doc: -score for doc, score in docs.items()} for qid, docs in DL_RERANKED.items()}

    outputs = report_test_splits(cfg, DataModule(), tmp_path)
    written = json.loads(outputs[f"metrics/{split}"].read_text())
    assert list(written["metrics"]["reranker"]) == list(DL_EXPECTED)
    for metric, expected in DL_EXPECTED.items():
        assert written["metrics"]["reranker"][metric] == pytest.approx(expected, abs=1e-12), metric
    assert written["meta"]["readings"] == {"lenient": 1, "strict": 2}
    assert written["meta"]["num_queries"] == 2  # both readings average the same queries


def test_split_protocol_expands_readings_and_keeps_explicit_levels():
    from lit_ir.evaluation import split_protocol

    protocol = {"metrics": ["ndcg@10", "map-l3"], "relevance_level": 1, "relevance_levels": {"dev": 2},
                "relevance_readings": {"dl19": {"lenient": 1, "strict": 2}}}
    dl19 = split_protocol(protocol, "dl19")
    assert dl19.metrics == ["ndcg@10-l1", "ndcg@10-l2", "map-l3"] and dl19.relevance_level == 1
    assert dl19.describe() == "-l1 lenient (grade >= 1), -l2 strict (grade >= 2)"
    dev = split_protocol(protocol, "dev")
    assert dev.metrics == ["ndcg@10", "map-l3"] and dev.relevance_level == 2 and dev.readings == {}
    with pytest.raises(InputError, match="relevance_readings.dl19.strict"):
        split_protocol({**protocol, "relevance_readings": {"dl19": {"strict": 0}}}, "dl19")
