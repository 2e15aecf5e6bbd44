"""SIR mechanics on hand-built scores: the compressor loss, which negatives survive each level, where V3's and V4's
gradients go, V4's loss against Eq. 7-9 computed by hand, reproducible Random selection, configuration errors."""

from __future__ import annotations

import math

import pytest
import torch

from lit_ir.losses import RANKING_LOSSES, compressor_loss
from lit_ir.models.sir import (
    Levels,
    LevelPlan,
    cpr_logits,
    level_losses,
    level_plan,
    run_levels,
    select_negatives,
)
from lit_ir.modules.sir import SIRModule


def softmax(values: list[float]) -> list[float]:
    total = sum(math.exp(v) for v in values)
    return [math.exp(v) / total for v in values]


def eq1(probabilities: list[float]) -> float:
    """Eq. 1 by hand: -log P(pos) - sum log(1 - P(neg))."""
    return -math.log(probabilities[0]) - sum(math.log(1 - p) for p in probabilities[1:])


# ---- the compressor loss (Eq. 1-2) ---------------------------------------------------------------------------------
def test_compressor_loss_matches_eq1_by_hand():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, -1.0]], dtype=torch.float64)
    expected = (eq1(softmax([2.0, 1.0, 0.0])) + eq1(softmax([0.0, 0.5, -1.0]))) / 2  # mean over blocks
    assert compressor_loss(scores).item() == pytest.approx(expected, rel=1e-12)
    assert eq1(softmax([2.0, 1.0, 0.0])) == pytest.approx(0.78263, abs=1e-5)  # 0.40761 + 0.28066 + 0.09436
    assert RANKING_LOSSES["sir_compressor"] is compressor_loss


def test_compressor_loss_is_finite_when_a_negative_takes_all_the_mass():
    # P(neg_1) = 1 - 2e-1000: log(1 - P) = log(2) - 1000, which 1 - softmax would round to log(0)
    scores = torch.tensor([[0.0, 1000.0, 0.0]])
    loss = compressor_loss(scores)
    assert torch.isfinite(loss)
    # -log P(pos) = 1000, -log(1 - P(neg_1)) = 1000 - log 2, -log(1 - P(neg_2)) = 0 (to float precision)
    assert loss.item() == pytest.approx(2000.0 - math.log(2), rel=1e-6)


# ---- levels and selection ------------------------------------------------------------------------------------------
def test_levels_validation():
    assert Levels.parse([88, 48, 16], "top").selection == ("top", "top")
    assert Levels.parse([88, 48, 16, 8], ["top", "random", "top"]).kept_negatives(1) == 15
    with pytest.raises(ValueError, match="strictly decrease"):
        Levels.parse([16, 16, 4], "top")
    with pytest.raises(ValueError, match="strictly decrease"):
        Levels.parse([8, 16], "top")
    with pytest.raises(ValueError, match="one entry per level"):
        Levels.parse([16, 8, 4], ["top"])
    with pytest.raises(ValueError, match="unknown mode"):
        Levels.parse([16, 8], "hardest")
    with pytest.raises(ValueError, match=">= 1 negative"):
        Levels.parse([4, 1], "top")


def test_top_selection_keeps_the_positive_then_the_highest_scored_negatives():
    columns = torch.arange(6).expand(2, -1)
    scores = torch.tensor([[9.0, 1.0, 5.0, 3.0, 7.0, 2.0],
                           [-5.0, 4.0, 0.0, 8.0, 1.0, 6.0]])  # the positive is kept even when it scores lowest
    assert select_negatives(columns, scores, 2, "top").tolist() == [[0, 4, 2], [0, 3, 5]]
    with pytest.raises(ValueError, match="cannot keep 6 negatives out of 5"):
        select_negatives(columns, scores, 6, "top")


def test_random_selection_is_reproducible_under_a_seed():
    columns = torch.arange(40).expand(8, -1)
    def draw(seed: int) -> torch.Tensor:
        return select_negatives(columns, None, 10, "random", torch.Generator().manual_seed(seed))

    first, again, other = draw(7), draw(7), draw(8)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert (first[:, 0] == 0).all()
    for row in first.tolist():  # distinct negatives, never the positive
        assert len(set(row[1:])) == 10 and 0 not in row[1:]
    # the module seeds it from (selection_seed, global step, rank): two modules with one seed draw alike
    draws = [SIRModule("random-bert-32x1", selection_seed=3)._selection_generator() for _ in range(2)]
    assert torch.equal(torch.rand(5, generator=draws[0]), torch.rand(5, generator=draws[1]))


class TableScorer:
    """Scores from a table per level: score(level, column); records the calls."""

    def __init__(self, tables: list[list[float]]):
        self.tables = [torch.tensor(table) for table in tables]
        self.calls: list[tuple[int, list[int], bool]] = []

    def __call__(self, level: int, columns: torch.Tensor, grad: bool) -> torch.Tensor:
        self.calls.append((level, columns[0].tolist(), grad))
        return self.tables[level][columns]


def test_which_negatives_survive_each_level():
    levels = Levels.parse([6, 4, 2], "top")
    scorer = TableScorer([
        [5.0, 1.0, 4.0, 3.0, 2.0, 0.0],  # level 1 keeps columns 2, 3, 4 (scores 4, 3, 2)
        [0.0, 0.0, 1.0, 0.0, 9.0, 0.0],  # level 2 re-scores them and keeps column 4
        [0.0] * 6,
    ])
    outputs = run_levels(scorer, levels, level_plan("v4", levels), blocks=1)
    assert [output.columns[0].tolist() for output in outputs] == [[0, 1, 2, 3, 4, 5], [0, 2, 3, 4], [0, 4]]
    # a Random first level ignores the scores; the second level still picks by its own
    mixed = Levels.parse([6, 4, 2], ["random", "top"])
    outputs = run_levels(scorer, mixed, level_plan("v4", mixed), 1, torch.Generator().manual_seed(0))
    survivors = outputs[1].columns[0].tolist()
    assert survivors[0] == 0 and len(set(survivors)) == 4
    best = max(survivors[1:], key=lambda column: scorer.tables[1][column].item())
    assert outputs[2].columns[0].tolist() == [0, best]


def test_level_plans():
    three = Levels.parse([16, 8, 4], "top")
    four_random = Levels.parse([16, 8, 4, 2], "random")
    scored, grad_free, skipped = LevelPlan(True, True), LevelPlan(True, False), LevelPlan(False, False)
    assert level_plan("v3", three) == [scored, grad_free, scored]
    assert level_plan("v3", four_random) == [scored, skipped, skipped, scored]  # random levels need no scores
    assert level_plan("v4", four_random) == [scored] * 4
    assert level_plan("v0", Levels.parse([16, 4], "random")) == [skipped, scored]
    # v1/v2 stage s: frozen compressors select for levels < s, compressor s trains on level s
    assert level_plan("v1", three, stage=0) == [scored]
    assert level_plan("v2", three, stage=2) == [grad_free, grad_free, scored]
    assert level_plan("v1", Levels.parse([16, 8, 4], "random"), stage=2) == [skipped, skipped, scored]


# ---- where the gradient goes ---------------------------------------------------------------------------------------
class ParameterScorer:
    """One learnable score per block column (a stand-in for the cross-encoder), plus per-level offsets."""

    def __init__(self, values: list[float], offsets: list[list[float]] | None = None):
        self.weight = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        self.offsets = torch.tensor(offsets or [[0.0] * len(values)] * 4, dtype=torch.float64)
        self.grad_flags: list[bool] = []

    def __call__(self, level: int, columns: torch.Tensor, grad: bool) -> torch.Tensor:
        self.grad_flags.append(grad)
        with torch.set_grad_enabled(grad):
            return self.weight[columns] + self.offsets[level][columns]


def test_v3_gradient_flows_only_through_the_scored_samples():
    levels = Levels.parse([6, 4, 2], "top")
    values = [0.3, 1.0, 2.0, -1.0, 0.5, -2.0]
    scorer = ParameterScorer(values)
    outputs = run_levels(scorer, levels, level_plan("v3", levels), 1)
    assert scorer.grad_flags == [True, False, True]  # the middle level only selects, without autograd
    assert outputs[1].scores.requires_grad is False
    losses = level_losses("v3", outputs)
    assert sorted(losses) == [0, 2]  # Eq. 5: first + last level
    survivors = outputs[2].columns[0].tolist()  # [0, 2]: the positive and the top negative
    assert survivors == [0, 2]

    (last_grad,) = torch.autograd.grad(losses[2], scorer.weight, retain_graph=True)
    assert set(last_grad.nonzero().flatten().tolist()) == set(survivors)
    total = sum(losses.values())
    (grad,) = torch.autograd.grad(total, scorer.weight)
    weight = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    by_hand = compressor_loss(weight.unsqueeze(0)) + compressor_loss(weight[survivors].unsqueeze(0))
    by_hand.backward()
    assert torch.allclose(grad, weight.grad) and total.item() == pytest.approx(by_hand.item())

    # the middle level's scores steer selection only: shifting them without changing the top one changes nothing
    shifted = ParameterScorer(values, offsets=[[0.0] * 6, [0.0, 0.0, 5.0, 0.0, 1.0, 0.0], [0.0] * 6])
    shifted_losses = level_losses("v3", run_levels(shifted, levels, level_plan("v3", levels), 1))
    assert sum(shifted_losses.values()).item() == pytest.approx(total.item())


def test_v4_loss_equals_eq7_to_9_by_hand():
    levels = Levels.parse([4, 3, 2], "top")
    o1, o2, o3 = [1.0, 2.0, 0.0, -1.0], [0.5, 1.0, -0.5], [2.0, 0.0]
    # level 1 scores columns 0-3 and keeps the two best negatives, columns 1 and 2; level 2 keeps column 1
    tables = [o1, [o2[0], o2[1], o2[2], 0.0], [o3[0], o3[1], 0.0, 0.0]]
    scores = [torch.tensor(table, dtype=torch.float64, requires_grad=True) for table in tables]
    outputs = run_levels(lambda level, columns, grad: scores[level][columns], levels, level_plan("v4", levels), 1)
    assert [output.columns[0].tolist() for output in outputs] == [[0, 1, 2, 3], [0, 1, 2], [0, 1]]

    p1, p2, p3 = softmax(o1), softmax(o2), softmax(o3)
    cpr1 = softmax(p1)  # Eq. 7 at level 1: softmax(P_1)
    cpr2 = softmax([p1[j] * p2[j] for j in range(3)])  # columns 0, 1, 2 are level 2's samples
    cpr3 = softmax([p1[j] * p2[j] * p3[j] for j in range(2)])  # columns 0, 1: positions 0, 1 at every level
    expected = eq1(cpr1) + eq1(cpr2) + eq1(cpr3)  # Eq. 8 per level, summed (Eq. 9)

    losses = level_losses("v4", outputs, cpr="softmax")
    assert cpr_logits(outputs, 2).softmax(-1)[0].tolist() == pytest.approx(cpr3, rel=1e-12)
    assert sum(losses.values()).item() == pytest.approx(expected, rel=1e-12)
    # the last level's loss reaches the first level's scores through the product, unlike V3
    (first_level_grad,) = torch.autograd.grad(losses[2], scores[0])
    assert first_level_grad[:2].abs().min() > 0

    # "normalize": the product renormalised over the survivors, a proper conditional probability
    normalized = level_losses("v4", outputs, cpr="normalize")
    products = [p1[j] * p2[j] * p3[j] for j in range(2)]
    assert normalized[2].item() == pytest.approx(eq1([value / sum(products) for value in products]), rel=1e-12)


def test_v4_tracks_positions_when_selection_reorders_the_samples():
    # level 1 keeps columns 3 then 1 (by score): level 2's samples are [0, 3, 1], and P_1 must follow the columns
    o1 = [0.0, 1.0, -1.0, 2.0]
    o2 = [0.3, -0.2, 0.9]  # scores of [0, 3, 1] at level 2
    scores = [torch.tensor(o1, dtype=torch.float64), torch.tensor([0.3, 0.9, 0.0, -0.2], dtype=torch.float64)]
    outputs = run_levels(lambda level, columns, grad: scores[level][columns], Levels.parse([4, 3], "top"),
                         [LevelPlan(True, True)] * 2, 1)
    assert outputs[1].columns[0].tolist() == [0, 3, 1]
    p1, p2 = softmax(o1), softmax(o2)
    by_hand = [p1[0] * p2[0], p1[3] * p2[1], p1[1] * p2[2]]
    assert cpr_logits(outputs, 1)[0].tolist() == pytest.approx(by_hand, rel=1e-12)


# ---- configuration errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "v5"}, "model.strategy"),
    ({"strategy": "v0", "selection": "top"}, "random negatives"),
    ({"strategy": "v3", "levels": [16]}, ">= 2 levels"),
    ({"levels": [16, 8, 8]}, "strictly decrease"),
    ({"strategy": "v3", "init": "previous"}, "only v1/v2"),
    ({"strategy": "v1", "init": "scratch"}, "only v1/v2"),
    ({"cpr": "log"}, "model.cpr"),
    ({"loss": "softmax_ce"}, "compressor loss"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_bad_configuration_fails_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SIRModule("random-bert-32x1", **kwargs)
