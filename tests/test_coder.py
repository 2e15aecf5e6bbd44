"""CODER's pieces: the losses on hand-computed cases, the scorers, and the candidate lists (positives shuffled in at
training time only, padding masked, ablations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lit_ir.data.coder import CandidateBatch, ListItem, RerankListDataset, TrainListDataset, TrainQuery, pad_lists
from lit_ir.losses import coder_listwise_kl, coder_max_margin
from lit_ir.models.candidate_scorer import DotProductScorer, TransformerScorer
from lit_ir.models.hub import build_random_bert
from lit_ir.modules.coder import CoderModule

# one query, 3 real candidates + 1 padded; candidate 1 has grade 2, candidate 2 grade 1
SCORES = torch.tensor([[1.0, 2.0, 0.0, 5.0]])
LABELS = torch.tensor([[0.0, 2.0, 1.0, 0.0]])
MASK = torch.tensor([[True, True, True, False]])


def test_listwise_kl_hand_computed():
    # targets: softmax over the grades of the relevant candidates only; predictions: softmax over real candidates
    t1, t2 = math.e**2 / (math.e**2 + math.e), math.e / (math.e**2 + math.e)
    log_z = math.log(math.e**1 + math.e**2 + math.e**0)
    expected = t1 * (math.log(t1) - (2.0 - log_z)) + t2 * (math.log(t2) - (0.0 - log_z))  # ~0.3632
    assert coder_listwise_kl(SCORES, LABELS, MASK).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.3632, abs=1e-4)


def test_listwise_kl_is_batchmean_and_ignores_padding():
    one = coder_listwise_kl(SCORES, LABELS, MASK)
    other_scores, other_labels = torch.tensor([[0.0, 3.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    two = coder_listwise_kl(torch.cat([SCORES, other_scores]), torch.cat([LABELS, other_labels]),
                            torch.cat([MASK, torch.ones(1, 4, dtype=torch.bool)]))
    expected_other = -math.log(math.e**0 / (3 + math.e**3))  # one relevant: KL = -log p(relevant)
    assert two.item() == pytest.approx((one.item() + expected_other) / 2, rel=1e-5)

    scores = SCORES.clone().requires_grad_(True)
    moved = scores.detach().clone()
    moved[0, 3] = -1e4  # whatever a padded candidate scores
    assert coder_listwise_kl(moved, LABELS, MASK).item() == pytest.approx(one.item())
    coder_listwise_kl(scores, LABELS, MASK).backward()
    assert scores.grad[0, 3] == 0 and torch.isfinite(scores.grad).all()


def test_max_margin_hand_computed():
    # relevant {1, 2} x non-relevant {0}: max(0, 1 - (2 - 1)) + max(0, 1 - (0 - 1)) = 0 + 2, over 3 real candidates
    assert coder_max_margin(SCORES, LABELS, MASK).item() == pytest.approx(2 / 3)


def test_losses_need_a_relevant_candidate():
    for loss in (coder_listwise_kl, coder_max_margin):
        with pytest.raises(ValueError, match="relevant candidate"):
            loss(SCORES, torch.tensor([[0.0, 0.0, 0.0, 3.0]]), MASK)  # the only relevant one is padding


def test_transformer_scorer_starts_as_dot_product_and_is_permutation_equivariant():
    torch.manual_seed(0)
    query, docs = torch.randn(2, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    dot = DotProductScorer()(query, docs, mask)
    scorer = TransformerScorer(dim=8, d_model=16, num_layers=2, num_heads=2, dim_feedforward=32, dropout=0.0).eval()
    assert torch.allclose(scorer(query, docs, mask), dot, atol=1e-6)  # zero-initialised output projection

    torch.nn.init.normal_(scorer.project_out.weight)  # as after training: documents now see their peers
    scores = scorer(query, docs, mask)
    assert not torch.allclose(scores, dot, atol=1e-3)
    order = torch.tensor([4, 2, 0, 1, 3])
    assert torch.allclose(scorer(query[:1], docs[:1, order], mask[:1]), scores[:1, order], atol=1e-5)
    # padding takes no part: the second query's real documents score the same without the padded ones
    alone = scorer(query[1:], docs[1:, :3], mask[1:, :3])
    assert torch.allclose(alone, scores[1:, :3], atol=1e-5)


def _train_query(candidates, positives, grades=None):
    positives = np.array(positives, dtype=np.int64)
    return TrainQuery("q", "a query", np.array(candidates, dtype=np.int64), positives,
                      np.array(grades or [1.0] * len(positives), dtype=np.float32), frozenset(positives.tolist()))


def test_positives_are_added_and_shuffled_in_at_training_time():
    query = _train_query(candidates=[10, 11, 12, 13, 14, 15], positives=[99, 12], grades=[2.0, 1.0])
    dataset = TrainListDataset([query], num_docs=100, num_candidates=5)
    first_positions = set()
    for epoch in range(20):
        dataset.set_epoch(epoch)
        item = dataset[0]
        # the top 5 candidates, the missed positive added, the retrieved positive not duplicated
        assert sorted(item.rows.tolist()) == [10, 11, 12, 13, 14, 99]
        labels = dict(zip(item.rows.tolist(), item.labels.tolist()))
        assert labels == {10: 0, 11: 0, 12: 1.0, 13: 0, 14: 0, 99: 2.0}
        first_positions.add(int(np.flatnonzero(item.rows == 99)[0]))
    assert len(first_positions) > 2  # the added positive moves around
    # the draw depends only on (seed, epoch, index): a fresh dataset (another worker, a resumed run) repeats it
    orders = {}
    for seed in (0, 0, 1):
        fresh = TrainListDataset([query], num_docs=100, num_candidates=5, seed=seed)
        draws = []
        for epoch in range(5):
            fresh.set_epoch(epoch)
            draws.append(fresh[0].rows.tolist())
        orders.setdefault(seed, []).append(draws)
    assert orders[0][0] == orders[0][1]
    assert orders[1][0] != orders[0][0]  # another seed, other orders
    dataset.set_epoch(3)
    assert dataset[0].rows.tolist() == orders[0][0][3]


class _Candidates:
    """The part of CandidateStore a RerankListDataset reads."""

    def __init__(self, rows):
        self._rows = {qid: np.array(r, dtype=np.int32) for qid, r in rows.items()}

    def rows(self, query_id):
        return self._rows[query_id]


def test_test_lists_are_the_first_stage_candidates_only():
    candidates = _Candidates({"a": [5, 3, 8, -1, -1], "b": [1, 2, 4, 6, 7]})
    dataset = RerankListDataset(["a", "b"], {"a": "qa", "b": "qb"}, candidates, depth=4)
    assert dataset[0].rows.tolist() == [5, 3, 8] and dataset[1].rows.tolist() == [1, 2, 4, 6]  # in order, no positives
    batch = RerankListDataset.collate([dataset[0], dataset[1]])
    assert batch.rows.tolist() == [[5, 3, 8, 0], [1, 2, 4, 6]]
    assert batch.mask.tolist() == [[True, True, True, False], [True] * 4]
    assert batch.queries == ["qa", "qb"] and batch.query_index.tolist() == [0, 1] and not batch.labels.any()


def test_random_negatives_ablation():
    query = _train_query(candidates=list(range(10)), positives=[50])
    item = TrainListDataset([query], num_docs=1000, num_candidates=20, negatives="random")[0]
    assert len(item.rows) == 21 and 50 in item.rows.tolist()
    assert not set(item.rows.tolist()) <= set(range(10)) | {50}  # not the retrieved candidates
    assert item.labels.sum() == 1.0


def test_in_batch_negatives_come_from_other_queries_and_skip_judged_documents():
    queries = [_train_query([1, 2, 3], [4]), _train_query([5, 6, 3], [7]), _train_query([8, 9, 4], [10])]
    dataset = TrainListDataset(queries, num_docs=100, num_candidates=3, in_batch_negatives=5)
    batch = dataset.collate([dataset[i] for i in range(3)])
    first = batch.rows[0][batch.mask[0]].tolist()
    own, extra = first[:4], first[4:]
    assert sorted(own) == [1, 2, 3, 4] and len(extra) == 5
    assert set(extra) <= {5, 6, 7, 8, 9, 10}  # others' documents, neither its own nor judged (4) nor duplicates
    assert batch.labels[0, 4:].sum() == 0 and batch.labels[0].sum() == 1.0


def test_pad_lists_masks_padding():
    items = [ListItem(0, "x", np.array([3, 1]), np.array([0.0, 2.0], dtype=np.float32)),
             ListItem(1, "y", np.array([7]), np.array([1.0], dtype=np.float32))]
    batch = pad_lists(items)
    assert batch.rows.tolist() == [[3, 1], [7, 0]] and batch.mask.tolist() == [[True, True], [True, False]]
    assert batch.labels.tolist() == [[0.0, 2.0], [1.0, 0.0]]


@pytest.mark.parametrize("scorer", ["dot", "transformer"])
def test_scores_and_loss_are_fp32_under_bf16_autocast(tmp_path, scorer):
    """trainer=gpu runs steps under bf16 autocast: the query encoder may run in bf16, the scores and loss may not
    (TAS-B-sized scores of ~100 have bf16 steps of 0.5: the candidates below would all tie)."""
    folder = build_random_bert(tmp_path, hidden=32, layers=1, vocab_texts=["wind tunnel flow", "shock waves"])
    factory = None if scorer == "dot" else lambda dim: TransformerScorer(dim, d_model=16, num_heads=2,
                                                                         dim_feedforward=32, dropout=0.0)
    module = CoderModule(encoder={"path": str(folder), "pooling": "cls"}, scorer=factory, dropout=0.0)
    module.configure_model()
    module.model.eval()
    queries = ["wind tunnel flow", "shock waves"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        query = module.model.encode_queries(queries).float()
    assert module.model.encode_queries(queries).dtype == torch.float32  # outside autocast
    # candidate i of each query scores 100 + 0.1 i in fp32: documents along the query's own direction
    targets = 100.0 + 0.1 * torch.arange(6.0)
    docs = targets[None, :, None] * (query / query.square().sum(-1, keepdim=True))[:, None, :]
    module._matrix = docs.reshape(-1, 32)  # the store, as doc_matrix would place it
    batch = CandidateBatch(query_index=torch.arange(2), queries=queries, rows=torch.arange(12).view(2, 6),
                           mask=torch.ones(2, 6, dtype=torch.bool), labels=torch.tensor([[0.0] * 5 + [1.0]] * 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = module.score(module.model, batch)
        base = module.score(module.base_model(), batch)
        loss = module.training_loss(batch)  # what training_step logs and returns
    assert scores.dtype == base.dtype == loss.dtype == torch.float32
    expected = module.scorer(query, docs, batch.mask)  # the same query embedding, scored in fp32
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(base, torch.einsum("bd,bnd->bn", query, docs), rtol=0, atol=1e-4)
    torch.testing.assert_close(loss, coder_listwise_kl(expected, batch.labels, batch.mask), rtol=1e-5, atol=1e-6)
    assert (scores.argsort(dim=1) == torch.arange(6)).all()  # every candidate in its place, no ties
    assert len(expected.bfloat16()[0].unique()) < 6  # which bf16 scores could not have told apart
