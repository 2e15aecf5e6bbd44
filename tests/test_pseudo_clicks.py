"""Pseudo click logs cut from document titles (lit_ir.data.pseudo_clicks): the recipe, its determinism, the
ORCAS layout, the command, and that nothing but the corpus's titles is read."""

from __future__ import annotations

import json
import logging
import random

import pytest

from lit_ir.data.clicks import ClickDataModule
from lit_ir.data.collections import read_clicks
from lit_ir.data.pseudo_clicks import (PseudoClickCollection, PseudoClickRecipe, draw_queries, keywords, main,
                                       read_titles, title_clicks)
from lit_ir.errors import InputError

TITLES = {
    "d1": "Experimental investigation of the aerodynamics of a wing in a slipstream.",
    "d2": "Simple shear flow past a flat plate, in an incompressible fluid (Mach 5.8).",
    "d3": "Two-dimensional panel flutter",
    "d4": "On the theory",  # one keyword: no query
    "d5": "Shear flow",  # its only span is "shear flow"
    "d6": "Shear flow",
}


def _beir(folder, titles=TITLES, with_queries=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": f"{t} body of {i}."}) + "\n"
                                                 for i, t in titles.items()))
    if with_queries:
        (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "secret dev query"}) + "\n")
        (folder / "qrels").mkdir(exist_ok=True)
        (folder / "qrels" / "dev.tsv").write_text("q1\td1\t1\n")
    return folder


def test_keywords_drop_stop_words_and_punctuation_keep_inner_hyphens():
    assert keywords(TITLES["d1"]) == ["experimental", "investigation", "aerodynamics", "wing", "slipstream"]
    assert keywords(TITLES["d2"]) == ["simple", "shear", "flow", "past", "flat", "plate", "incompressible", "fluid",
                                      "mach", "5", "8"]
    assert keywords(TITLES["d3"]) == ["two-dimensional", "panel", "flutter"]


def test_queries_are_distinct_contiguous_keyword_spans_drawn_from_seed_and_doc_id():
    words = keywords(TITLES["d2"])
    phrase = " ".join(words)
    recipe = PseudoClickRecipe(queries_per_doc=3, min_words=2, max_words=4, seed=7)
    queries = draw_queries(words, "d2", recipe)
    assert len(queries) == len(set(queries)) == 3
    assert all(2 <= len(query.split()) <= 4 and f" {query} " in f" {phrase} " for query in queries)
    assert draw_queries(words, "d2", recipe) == queries  # (seed, doc id) alone decide
    draws = {tuple(draw_queries(words, "d2", PseudoClickRecipe(3, 2, 4, seed))) for seed in range(10)}
    assert len(draws) > 5
    # a title with few spans gives what it has; one with too few keywords gives nothing
    assert draw_queries(["shear", "flow"], "x", recipe) == ["shear flow"]
    assert draw_queries(["theory"], "x", recipe) == []
    # lengths are drawn uniformly (among the lengths left), not in proportion to their number of spans
    lengths = [len(q.split()) for seed in range(300) for q in draw_queries(words, "d2", PseudoClickRecipe(1, 2, 4, seed))]
    assert all(abs(lengths.count(n) / len(lengths) - 1 / 3) < 0.08 for n in (2, 3, 4))


def test_a_query_drawn_for_several_documents_is_one_query_clicked_on_each(caplog):
    with caplog.at_level(logging.INFO):
        clicks = title_clicks(TITLES, PseudoClickRecipe(seed=0), url_scheme="cran")
    assert "1 of 6 documents have fewer than 2 title keywords" in caplog.text and "'d4'" in caplog.text
    shear = [click for click in clicks if click.query == "shear flow"]
    assert {click.doc_id for click in shear} >= {"d5", "d6"} and len({click.query_id for click in shear}) == 1
    assert "d4" not in {click.doc_id for click in clicks}
    by_query: dict[str, str] = {}
    for click in clicks:
        assert by_query.setdefault(click.query_id, click.query) == click.query  # one text per id
        assert click.url == f"cran://{click.doc_id}"
    per_doc = {doc: sum(click.doc_id == doc for click in clicks) for doc in ("d1", "d2", "d3")}
    assert per_doc == {"d1": 2, "d2": 2, "d3": 2}
    # the same log whatever the corpus order (ids are numbered in order of first appearance, so compare pairs)
    shuffled = dict(random.Random(1).sample(sorted(TITLES.items()), len(TITLES)))
    pairs = lambda log: sorted((click.query, click.doc_id) for click in log)  # noqa: E731
    assert pairs(title_clicks(shuffled)) == pairs(clicks)
    with pytest.raises(InputError, match="no title has 2 or more keywords"):
        title_clicks({"a": "", "b": "of the"})


def test_the_command_writes_an_orcas_log_from_titles_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIT_IR_CACHE", str(tmp_path / "cache"))
    folder = _beir(tmp_path / "mini")
    out = main([str(folder), "--seed", "3"])
    assert out == tmp_path / "cache" / "pseudo_clicks" / "mini-seed3.tsv" and str(out) in capsys.readouterr().out
    written = list(read_clicks(out))
    assert written == title_clicks(read_titles(folder), PseudoClickRecipe(seed=3), url_scheme="mini")
    # queries and qrels are never read: without them (or with other ones) the log is the same, and no query leaks
    bare = main([str(_beir(tmp_path / "bare" / "mini", with_queries=False)), "--seed", "3",
                 "--out", str(tmp_path / "bare.tsv")])
    assert bare.read_text() == out.read_text()
    assert "secret" not in out.read_text()
    with pytest.raises(InputError, match="corpus.jsonl is missing"):
        main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.tsv")])


def test_a_pseudo_click_collection_feeds_coarse_tuning(tmp_path):
    titles = {f"d{i}": f"study {i} of shear flow number {i} past plate {i}" for i in range(30)}
    folder = _beir(tmp_path / "beir", titles)
    collection = PseudoClickCollection(folder, pseudo_clicks={"seed": 1, "queries_per_doc": 3})
    assert list(collection.clicks()) == title_clicks(titles, PseudoClickRecipe(queries_per_doc=3, seed=1),
                                                     url_scheme="beir")
    assert collection.splits() == ["dev"] and collection.queries("dev") == {"q1": "secret dev query"}
    datamodule = ClickDataModule(collection, sample_rate=1.0, held_out_fraction=0.2)
    datamodule.setup("fit")
    summary = datamodule.clicks().summary()
    assert summary["missing_doc"] == 0 and summary["clicks_read"] == len(list(collection.clicks()))
    assert summary["sampled_train"] > 0 and summary["sampled_held_out"] > 0
