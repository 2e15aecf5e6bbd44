import json
import logging
import math
from collections import Counter

import pytest

from lit_ir.data.collections import BeirCollection
from lit_ir.data.trec import write_run
from lit_ir.errors import InputError
from lit_ir.retrieval.bm25 import BM25Index
from lit_ir.retrieval.first_stage import BM25FirstStage, RunFiles

# No stemming, no stopwords, words of 2+ letters: the terms are the whitespace-separated words.
PLAIN = {"stemmer": None, "stopwords": None}
FRUIT = {
    "d1": "apple apple banana",
    "d2": "apple cherry cherry cherry",
    "d3": "banana banana cherry",
    "d4": "durian",
    "d5": "apple banana cherry durian elder",
}


def lucene_bm25(query: str, docs: dict[str, str], k1: float, b: float) -> dict[str, float]:
    """The Lucene BM25 formula, written out; documents without a query term are left out."""
    terms = {doc_id: text.split() for doc_id, text in docs.items()}
    n, avgdl = len(docs), sum(map(len, terms.values())) / len(docs)
    scores = {}
    for doc_id, words in terms.items():
        tf, score = Counter(words), 0.0
        for term in query.split():
            df = sum(term in other for other in terms.values())
            if tf[term]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(words) / avgdl))
        if score:
            scores[doc_id] = score
    return scores


def write_beir(path, docs: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, dict[str, int]]]):
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""
    (path / "qrels").mkdir(parents=True, exist_ok=True)
    with open(path / "corpus.jsonl", "w") as handle:
        for doc_id, text in docs.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(path / "queries.jsonl", "w") as handle:
        for query_id, text in queries.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    for split, judged in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"]
        lines += [f"{qid}\t{doc_id}\t{grade}" for qid, docs in judged.items() for doc_id, grade in docs.items()]
        (path / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fruit_collection(tmp_path):
    queries = {"q1": "apple banana", "q2": "cherry", "q3": "kiwi mango"}
    qrels = {"train": {"q1": {"d1": 1}, "q2": {"d2": 1}}, "dev": {"q3": {"d4": 1}}}
    return write_beir(tmp_path / "fruit", FRUIT, queries, qrels)


def test_scores_follow_the_lucene_formula():
    index = BM25Index.build(list(FRUIT), list(FRUIT.values()), k1=0.9, b=0.4, **PLAIN)
    ranking = index.search({"q": "apple banana"}, k=10)["q"]
    expected = lucene_bm25("apple banana", FRUIT, k1=0.9, b=0.4)
    assert list(ranking) == sorted(expected, key=expected.get, reverse=True)  # d4 shares no term: not returned
    for doc_id, score in ranking.items():
        # bm25s drops the constant factor (k1 + 1), as Lucene >= 8 does; the ranking is the same.
        assert score * (0.9 + 1) == pytest.approx(expected[doc_id], rel=1e-5)


def test_ties_break_by_doc_id_descending_and_k_is_clipped():
    docs = {"a": "same words", "c": "same words", "b": "same words", "z": "other text"}
    index = BM25Index.build(list(docs), list(docs.values()), **PLAIN)
    assert list(index.search({"q": "same"}, k=2)["q"]) == ["c", "b"]
    assert list(index.search({"q": "same"}, k=100)["q"]) == ["c", "b", "a"]


def test_queries_without_a_known_term_get_an_empty_ranking_and_a_warning(caplog):
    index = BM25Index.build(list(FRUIT), list(FRUIT.values()))
    queries = {"empty": "", "stop": "the of and", "unseen": "kiwi mango", "ok": "Apples"}
    with caplog.at_level(logging.WARNING):
        run = index.search(queries, k=3)
    assert list(run) == list(queries)
    assert run["empty"] == run["stop"] == run["unseen"] == {}
    assert list(run["ok"]) == ["d1", "d2", "d5"]  # stemmed "apples" matches "apple"
    assert "3 of 4 queries" in caplog.text and "'empty', 'stop', 'unseen'" in caplog.text


def test_build_rejects_duplicate_ids_empty_collections_and_unsupported_methods():
    with pytest.raises(InputError, match="duplicate document ids: 'd1'"):
        BM25Index.build(["d1", "d2", "d1"], ["a b", "c d", "e f"])
    with pytest.raises(InputError, match="empty collection"):
        BM25Index.build([], [])
    with pytest.raises(InputError, match="has an indexable term"):
        BM25Index.build(["d1"], ["the a"])
    with pytest.raises(ValueError, match="robertson"):
        BM25Index.build(["d1"], ["words"], method="robertson")


def test_save_and_load_give_the_same_run(tmp_path):
    index = BM25Index.build(list(FRUIT), list(FRUIT.values()), k1=1.2, b=0.75)
    queries = {"q1": "apple banana", "q2": "cherries and durians", "q3": "nothing"}
    index.save(tmp_path / "index")
    index.save(tmp_path / "index")  # replacing an existing index
    loaded = BM25Index.load(tmp_path / "index")
    assert loaded.search(queries, k=4) == index.search(queries, k=4)
    assert loaded.params == {"k1": 1.2, "b": 0.75, "method": "lucene", "stemmer": "english", "stopwords": "en"}
    assert json.loads((tmp_path / "index" / "lit_ir_bm25.json").read_text())["num_docs"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temporary folder left behind
    with pytest.raises(InputError, match="not a lit_ir BM25 index"):
        BM25Index.load(tmp_path)


def test_bm25_first_stage_caches_and_a_changed_collection_invalidates(fruit_collection, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cache = tmp_path / "cache"
    first = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    assert "building a BM25 index" in caplog.text
    assert list(first["q2"]) == ["d2", "d3", "d5"]
    (run_file,) = (cache / "fruit" / "runs").iterdir()
    assert run_file.name.startswith("train.bm25-k10-")

    caplog.clear()
    again = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    assert again == first and "reading the cached BM25 run" in caplog.text and "building" not in caplog.text
    caplog.clear()
    BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "dev")
    assert "loaded the BM25 index" in caplog.text

    with open(fruit_collection / "corpus.jsonl", "a") as handle:
        handle.write(json.dumps({"_id": "d6", "text": "cherry cherry"}) + "\n")
    caplog.clear()
    changed = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    assert "building a BM25 index" in caplog.text
    assert "d6" in changed["q2"]
    assert len(list((cache / "fruit").glob("bm25-*"))) == 2


def fresh_run(path, split, tmp_path):
    """The BM25 run of the folder computed with an empty cache: what any cached run must equal."""
    return BM25FirstStage(k=10, cache_dir=tmp_path / "fresh" / path.name, **PLAIN)(BeirCollection(path), split)


def test_a_corrected_corpus_in_the_same_folder_is_never_served_the_old_run(fruit_collection, tmp_path, caplog):
    cache = tmp_path / "cache"
    old = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    assert "d4" not in old["q2"]
    # the same ids, one text corrected: the cached index and run no longer describe this corpus
    write_beir(fruit_collection, {**FRUIT, "d4": "durian cherry"}, {"q1": "apple banana", "q2": "cherry"},
               {"train": {"q1": {"d1": 1}, "q2": {"d2": 1}}})
    caplog.set_level(logging.INFO)
    corrected = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    assert "building a BM25 index" in caplog.text
    assert "d4" in corrected["q2"] and corrected == fresh_run(fruit_collection, "train", tmp_path)


def test_a_changed_query_text_gets_a_new_run(fruit_collection, tmp_path):
    cache = tmp_path / "cache"
    BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    write_beir(fruit_collection, FRUIT, {"q1": "apple banana", "q2": "durian"},
               {"train": {"q1": {"d1": 1}, "q2": {"d2": 1}}})
    run = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    assert list(run["q2"]) == ["d4", "d5"]


def test_collections_whose_names_differ_only_in_punctuation_keep_their_own_runs(tmp_path):
    cache, queries, qrels = tmp_path / "cache", {"q1": "cherry"}, {"train": {"q1": {"d2": 1}}}
    spaced = write_beir(tmp_path / "cran field", FRUIT, queries, qrels)
    joined = write_beir(tmp_path / "cran_field", {**FRUIT, "d4": "cherry cherry cherry cherry"}, queries, qrels)
    for path in (spaced, joined, spaced):
        run = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(path), "train")
        assert run == fresh_run(path, "train", tmp_path), path.name
    assert len({p.name for p in cache.iterdir()}) == 2  # one cache folder per collection name


def test_the_cache_key_is_the_content_not_the_path(fruit_collection, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(fruit_collection), "train")
    moved = tmp_path / "elsewhere" / "fruit"
    moved.parent.mkdir()
    fruit_collection.rename(moved)
    caplog.set_level(logging.INFO)
    assert BM25FirstStage(k=10, cache_dir=cache, **PLAIN)(BeirCollection(moved), "train") == first
    assert "reading the cached BM25 run" in caplog.text


def test_first_stage_keeps_queries_without_candidates_and_warns(fruit_collection, tmp_path, caplog):
    run = BM25FirstStage(k=10, cache_dir=tmp_path / "cache")(BeirCollection(fruit_collection), "dev")
    assert run == {"q3": {}}
    assert "1 of 1 queries of the split have no candidates" in caplog.text and "'q3'" in caplog.text


def test_run_files_check_doc_ids_and_splits_and_cut_depth(fruit_collection, tmp_path):
    collection = BeirCollection(fruit_collection)
    good = write_run({"q1": {"d1": 3.0, "d2": 2.0, "d5": 1.0}, "q2": {"d2": 1.0}}, tmp_path / "good.trec")
    assert RunFiles({"train": str(good)}, k=2)(collection, "train") == {"q1": {"d1": 3.0, "d2": 2.0}, "q2": {"d2": 1.0}}

    bad = write_run({"q1": {"d1": 1.0, "nope": 0.5}}, tmp_path / "bad.trec")
    with pytest.raises(InputError, match=r"bad\.trec: document id 'nope' \(query 'q1'\)"):
        RunFiles({"train": bad})(collection, "train")
    with pytest.raises(InputError, match=r"no run file given for split 'dev'.*\['train'\]"):
        RunFiles({"train": good})(collection, "dev")


def test_run_files_from_a_folder_and_for_held_out_splits(fruit_collection, tmp_path):
    """SIR's HDCT/ANCE candidates: one <split>.trec per split; train_fit / train_val read train's run."""
    collection = BeirCollection(fruit_collection, held_out={"split": "train", "size": 1})
    runs = tmp_path / "hdct"
    write_run({"q1": {"d1": 3.0, "d2": 2.0}, "q2": {"d2": 1.0, "d5": 0.5}}, runs / "train.trec")
    first_stage = RunFiles(folder=runs, k=1)
    assert first_stage(collection, "train") == {"q1": {"d1": 3.0}, "q2": {"d2": 1.0}}
    held, rest = collection.queries("train_val"), collection.queries("train_fit")
    assert first_stage(collection, "train_val") == {q: first_stage(collection, "train")[q] for q in held}
    assert first_stage(collection, "train_fit") == {q: first_stage(collection, "train")[q] for q in rest}
    with pytest.raises(InputError, match=r"the run file of split 'dev' does not exist: .*hdct/dev\.trec"):
        first_stage(collection, "dev")
    with pytest.raises(ValueError, match="paths .* or as a folder"):
        RunFiles(paths={"train": runs / "train.trec"}, folder=runs)
    with pytest.raises(ValueError, match="no {split} placeholder"):
        RunFiles(folder=runs, file_name="run.trec")


@pytest.mark.slow  # numba compiles bm25s's search for ~6 s
def test_numba_and_numpy_backends_give_the_same_run():
    docs = {f"d{i}": " ".join(["common"] * (i % 3 + 1) + [f"w{i % 7}", f"v{i % 5}"]) for i in range(200)}
    index = BM25Index.build(list(docs), list(docs.values()), **PLAIN)
    queries = {f"q{i}": f"common w{i % 7} v{i % 4}" for i in range(30)} | {"none": "unseen"}
    assert index.search(queries, k=25, backend="numba") == index.search(queries, k=25, backend="numpy")
