"""Coarse-tuning data: MLM masking, click sampling, QDPP labels and negatives, missing documents, CV folds."""

from __future__ import annotations

import logging

import pytest
import torch

from lit_ir.data.clicks import ClickDataModule, QDPPDataset, sample_clicks
from lit_ir.data.collections import BeirCollection, Click, DocStore
from lit_ir.data.folds import CrossValidationFolds, rotation
from lit_ir.data.masking import IGNORE_INDEX, mask_tokens
from lit_ir.errors import InputError

CLS, SEP, PAD, MASK = 2, 3, 0, 4
SPECIALS = [PAD, 1, CLS, SEP, MASK]
VOCAB = 1000


def _pairs(batch: int = 400, query: int = 8, doc: int = 40, pad: int = 6) -> dict[str, torch.Tensor]:
    """[CLS] q [SEP] d [SEP] [PAD]..., real token ids 10..VOCAB-1."""
    generator = torch.Generator().manual_seed(1)
    width = query + doc + 3 + pad
    ids = torch.full((batch, width), PAD)
    ids[:, 0] = CLS
    ids[:, 1 : query + 1] = torch.randint(10, VOCAB, (batch, query), generator=generator)
    ids[:, query + 1] = SEP
    ids[:, query + 2 : query + 2 + doc] = torch.randint(10, VOCAB, (batch, doc), generator=generator)
    ids[:, query + 2 + doc] = SEP
    attention = (ids != PAD).long()
    types = torch.zeros_like(ids)
    types[:, query + 2 : query + doc + 3] = 1
    return {"input_ids": ids, "attention_mask": attention, "token_type_ids": types}


def test_masking_rates_80_10_10_and_specials_never_masked():
    inputs = _pairs()
    ids = inputs["input_ids"]
    corrupted, labels = mask_tokens(ids, inputs["attention_mask"], SPECIALS, MASK, VOCAB, rate=0.15,
                                    generator=torch.Generator().manual_seed(0))
    real = (inputs["attention_mask"] == 1) & ~torch.isin(ids, torch.tensor(SPECIALS))
    selected = labels != IGNORE_INDEX
    assert not (selected & ~real).any(), "a special or padding token was selected"
    specials = ~real
    assert torch.equal(corrupted[specials], ids[specials]), "specials and padding must stay as they are"
    assert torch.equal(labels[selected], ids[selected])  # labels are the original ids
    n_real, n_selected = int(real.sum()), int(selected.sum())  # 400 x 48 = 19,200 real tokens
    assert n_selected / n_real == pytest.approx(0.15, abs=0.01)
    to_mask = (corrupted == MASK) & selected
    unchanged = (corrupted == ids) & selected
    assert to_mask.sum() / n_selected == pytest.approx(0.8, abs=0.03)
    # 10% kept + the ~0.1% of random replacements that draw the original token
    assert unchanged.sum() / n_selected == pytest.approx(0.1, abs=0.02)
    assert (selected & ~to_mask & ~unchanged).sum() / n_selected == pytest.approx(0.1, abs=0.02)
    assert torch.equal(corrupted[~selected], ids[~selected])  # unselected tokens never change


def test_query_tokens_can_be_masked_at_a_higher_rate():
    inputs = _pairs()
    _, labels = mask_tokens(inputs["input_ids"], inputs["attention_mask"], SPECIALS, MASK, VOCAB, rate=0.15,
                            query_rate=0.5, token_type_ids=inputs["token_type_ids"],
                            generator=torch.Generator().manual_seed(0))
    selected = labels != IGNORE_INDEX
    query, doc = selected[:, 1:9], selected[:, 10:50]
    assert query.float().mean() == pytest.approx(0.5, abs=0.03)
    assert doc.float().mean() == pytest.approx(0.15, abs=0.01)
    with pytest.raises(ValueError, match="token_type_ids"):
        mask_tokens(inputs["input_ids"], inputs["attention_mask"], SPECIALS, MASK, VOCAB, query_rate=0.5)


def _clicks(n: int, n_docs: int = 50) -> list[Click]:
    return [Click(f"q{i}", f"query {i}", f"d{i % n_docs}", "") for i in range(n)]


def _docs(n_docs: int = 50) -> DocStore:
    return DocStore({f"d{i}": f"document {i}" for i in range(n_docs)}, source="test")


def test_sampling_is_deterministic_under_the_seed_and_order_free():
    clicks, docs = _clicks(4000), _docs()
    first = sample_clicks(clicks, docs, rate=0.1, seed=3, held_out_fraction=0.1)
    again = sample_clicks(reversed(clicks), docs, rate=0.1, seed=3, held_out_fraction=0.1)
    other_seed = sample_clicks(clicks, docs, rate=0.1, seed=4, held_out_fraction=0.1)
    assert {c.query_id for c in first.train} == {c.query_id for c in again.train}
    assert {c.query_id for c in first.train} != {c.query_id for c in other_seed.train}
    assert len(first.held_out) / 4000 == pytest.approx(0.1, abs=0.015)  # every click of 10% of the queries
    assert len(first.train) / (4000 - len(first.held_out)) == pytest.approx(0.1, abs=0.015)
    assert not {c.query_id for c in first.train} & {c.query_id for c in first.held_out}
    # a lower rate keeps a subset of a higher one (the same hash): sweeps over the rate are nested, and they
    # validate on the same held-out clicks
    lower = sample_clicks(clicks, docs, rate=0.05, seed=3, held_out_fraction=0.1)
    assert {c.query_id for c in lower.train} < {c.query_id for c in first.train}
    assert lower.held_out == first.held_out


def test_clicks_on_missing_documents_are_counted_reported_or_fatal(caplog):
    clicks = _clicks(20) + [Click("qx", "lost query", "nope", ""), Click("qy", "lost too", "gone", "")]
    with caplog.at_level(logging.WARNING):
        sample = sample_clicks(clicks, _docs(), rate=1.0, held_out_fraction=0.0)
    assert [c.doc_id for c in sample.missing_doc] == ["nope", "gone"]
    assert sample.summary() == {"clicks_read": 22, "sampled_train": 20, "sampled_held_out": 0, "missing_doc": 2}
    assert "2 of 22 sampled clicks" in caplog.text and "nope" in caplog.text
    with pytest.raises(InputError, match="'nope'.*not in the collection"):
        sample_clicks(clicks, _docs(), rate=1.0, missing_docs="error")


def test_empty_sample_is_a_clear_error():
    with pytest.raises(InputError, match="no training click left after sampling 3 clicks at rate 0.001"):
        sample_clicks(_clicks(3), _docs(), rate=0.001)
    with pytest.raises(ValueError, match="sample rate"):
        sample_clicks(_clicks(3), _docs(), rate=0.0)


def test_qdpp_labels_are_half_negative_and_negatives_are_never_clicked():
    clicks = _clicks(2000) + [Click("q0", "query 0", "d7", "")]  # q0 clicked d0 and d7
    dataset = QDPPDataset(clicks, _docs(), [f"d{i}" for i in range(50)], negative_rate=0.5, seed=0)
    items = [dataset[i] for i in range(len(dataset))]
    labels = [label for _, _, label in items]
    assert sum(labels) / len(labels) == pytest.approx(0.5, abs=0.03)
    for click, (query, doc, label) in zip(clicks, items):
        assert query == click.query
        if label == 1.0:
            assert doc == f"document {click.doc_id[1:]}"
        else:
            assert doc not in {f"document {d[1:]}" for d in dataset.clicked[click.query_id]}
    assert [dataset[i] for i in range(50)] == items[:50]  # the same draw for the same (seed, epoch, index)
    dataset.set_epoch(1)
    assert [dataset[i] for i in range(200)] != items[:200]  # new draws in a new epoch
    batch = QDPPDataset.collate(items[:4])
    assert batch.labels.dtype == torch.float and batch.labels.tolist() == labels[:4]


def test_hard_negatives_come_from_the_given_pool_without_clicked_documents():
    clicks = [Click("q0", "query 0", "d0", ""), Click("q1", "query 1", "d1", "")]
    pools = {"q0": ["d0", "d5"], "q1": ["d1"]}  # q1's pool holds only its clicked doc: fall back to random
    dataset = QDPPDataset(clicks, _docs(), [f"d{i}" for i in range(50)], negative_rate=1.0, hard_negatives=pools)
    for epoch in range(20):
        dataset.set_epoch(epoch)
        assert dataset[0] == ("query 0", "document 5", 0.0)
        assert dataset[1][1] != "document 1" and dataset[1][2] == 0.0


def _beir(tmp_path, n_docs=30, clicks: list[str] | None = None):
    (tmp_path / "qrels").mkdir(parents=True)
    corpus = "".join(f'{{"_id": "d{i}", "text": "word{i} text"}}\n' for i in range(n_docs))
    (tmp_path / "corpus.jsonl").write_text(corpus)
    (tmp_path / "queries.jsonl").write_text("".join(f'{{"_id": "q{i}", "text": "word{i}"}}\n' for i in range(20)))
    (tmp_path / "qrels" / "train.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(12)))
    (tmp_path / "qrels" / "dev.tsv").write_text("".join(f"q{i}\td{i}\t2\n" for i in range(12, 20)))
    if clicks is not None:
        (tmp_path / "clicks.tsv").write_text("".join(clicks))
    return BeirCollection(tmp_path)


def test_click_datamodule_reads_an_orcas_layout_log_beside_a_collection(tmp_path):
    rows = [f"c{i}\tword{i % 30} click\td{i % 30}\turl://{i}\n" for i in range(200)] + ["cz\tlost\td999\turl://z\n"]
    collection = _beir(tmp_path, clicks=rows)
    datamodule = ClickDataModule(collection, sample_rate=1.0, held_out_fraction=0.1, train_batch_size=16)
    datamodule.setup("fit")
    assert datamodule.clicks().summary()["missing_doc"] == 1
    assert len(datamodule.train_dataset) + len(datamodule.held_out_dataset) == 200
    batch = next(iter(datamodule.train_dataloader()))
    assert len(batch.queries) == len(batch.docs) == 16 and set(batch.labels.tolist()) <= {0.0, 1.0}
    with pytest.raises(InputError, match="d999"):
        ClickDataModule(collection, sample_rate=1.0, missing_docs="error").setup("fit")
    with pytest.raises(InputError, match="has no click log"):
        ClickDataModule(_beir(tmp_path / "no_clicks"), sample_rate=1.0).setup("fit")


def test_cross_validation_folds_partition_the_queries(tmp_path):
    folds = CrossValidationFolds(_beir(tmp_path), n_folds=5, splits=["train", "dev"], seed=0)
    assert folds.splits() == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    per_fold = [set(folds.queries(split)) for split in folds.splits()]
    assert sorted(len(queries) for queries in per_fold) == [4, 4, 4, 4, 4]
    assert set().union(*per_fold) == {f"q{i}" for i in range(20)}
    assert folds.qrels("fold1") == {qid: {f"d{qid[1:]}": 1 if int(qid[1:]) < 12 else 2} for qid in per_fold[0]}
    assert rotation(5, 5) == {"train_split": ["fold2", "fold3", "fold4"], "val_split": "fold1",
                              "test_splits": ["fold5"]}
    reseeded = CrossValidationFolds(_beir(tmp_path / "b"), 5, seed=1)
    assert per_fold != [set(reseeded.queries(split)) for split in reseeded.splits()]


def test_bm25_hard_negatives_come_from_the_click_querys_ranking(tmp_path):
    from lit_ir.retrieval.first_stage import BM25FirstStage

    rows = [f"c{i}\tword{i} text\td{i}\turl://{i}\n" for i in range(30)]
    collection = _beir(tmp_path / "beir", clicks=rows)
    first_stage = BM25FirstStage(k=3, cache_dir=tmp_path / "bm25", stopwords=None)
    datamodule = ClickDataModule(collection, sample_rate=1.0, held_out_fraction=0.0, negative_rate=1.0,
                                 negatives="first_stage", first_stage=first_stage, hard_negative_depth=3)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    for index, click in enumerate(dataset.clicks):
        query, doc, label = dataset[index]
        # "wordN text" ranks dN first (clicked, never a negative), then documents sharing only "text"
        assert label == 0.0 and doc != f"word{click.doc_id[1:]} text"
        assert doc in {collection.docs()[doc_id] for doc_id in dataset.hard_negatives[click.query_id]}
    assert all(len(pool) == 3 for pool in dataset.hard_negatives.values())
    with pytest.raises(ValueError, match="needs a first_stage"):
        ClickDataModule(collection, negatives="first_stage")
