"""SIR (Self-Involvement Ranker) mechanics in plain torch: the levels of a block, how each level picks the next
level's negatives, and the per-level losses of each strategy. `lit_ir.modules.sir` runs them with cross-encoders.

A *block* is one query's 1 positive (column 0) + N first-stage negatives. Level i scores its samples `S_i` (a set of
block columns, the positive first) and hands the positive plus K_i of its negatives, the highest-scored (Top) or a
uniform draw (Random), to level i + 1. Widths count the positive: (88, 48, 16) keeps 47, then 15 negatives.

Which levels are scored, with or without gradient, and what the loss is, per strategy (M levels):
- v0: fine-tuning on random negatives: only the last level is scored (every selection must be Random); Eq. 1.
- v1, v2 (stage s trains compressor s): levels < s are scored without gradient by the frozen compressors (only
  where they select Top); level s is scored with gradient; loss Eq. 1 on level s.
- v3: one shared model; the first and last levels are scored with gradient, the others without (only for Top
  selection); loss = L_1 + L_M (Eq. 5). Selection never carries gradient.
- v4: every level is scored with gradient; loss = sum_i Eq. 8 on CPR_i (Eq. 7, 9), so each level's loss also
  reaches the earlier levels' scores through the product of probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch

from lit_ir.losses import compressor_loss

STRATEGIES = ("v0", "v1", "v2", "v3", "v4")
SEQUENTIAL = ("v1", "v2")  # separate compressors trained one after another
SELECTIONS = ("top", "random")
CPR_MODES = ("softmax", "normalize")


@dataclass(frozen=True)
class Levels:
    widths: tuple[int, ...]  # samples per block at each level, the positive included, strictly decreasing
    selection: tuple[str, ...]  # how level i picks level i + 1's negatives; one entry per level but the last

    @classmethod
    def parse(cls, widths: Sequence[int], selection: str | Sequence[str]) -> Levels:
        """Validate a configuration; errors name the offending value."""
        widths = tuple(int(width) for width in widths)
        if not widths:
            raise ValueError("SIR needs at least one level (model.levels, e.g. [88, 48, 16])")
        if widths[-1] < 2:
            raise ValueError(f"model.levels={list(widths)}: every level needs the positive and >= 1 negative")
        if any(later >= earlier for earlier, later in pairwise(widths)):
            raise ValueError(f"model.levels={list(widths)} must strictly decrease: each level keeps fewer samples")
        selection = (selection,) * (len(widths) - 1) if isinstance(selection, str) else tuple(selection)
        if len(selection) != len(widths) - 1:
            raise ValueError(f"model.selection={list(selection)}: need one entry per level transition "
                             f"({len(widths) - 1} for levels {list(widths)}), or one word for all")
        if unknown := [mode for mode in selection if mode not in SELECTIONS]:
            raise ValueError(f"model.selection: unknown mode(s) {unknown}; choose from {SELECTIONS}")
        return cls(widths, selection)

    def __len__(self) -> int:
        return len(self.widths)

    def kept_negatives(self, level: int) -> int:
        """K_level: the negatives level `level` hands to the next one."""
        return self.widths[level + 1] - 1


@dataclass(frozen=True)
class LevelPlan:
    scored: bool  # run a model on this level's samples
    grad: bool  # with autograd (its scores enter the loss)


def level_plan(strategy: str, levels: Levels, stage: int = 0) -> list[LevelPlan]:
    """What each level runs, up to the last level the loss needs (see the module docstring)."""
    last = len(levels) - 1

    def needs_scores(level: int) -> bool:  # a level that is not trained on is scored only to select Top
        return level < last and levels.selection[level] == "top"

    if strategy == "v0":
        return [LevelPlan(False, False)] * last + [LevelPlan(True, True)]
    if strategy in SEQUENTIAL:
        return [LevelPlan(needs_scores(level), False) for level in range(stage)] + [LevelPlan(True, True)]
    if strategy == "v3":
        return [LevelPlan(True, True)] + [LevelPlan(needs_scores(level), False) for level in range(1, last)] + \
            ([LevelPlan(True, True)] if last else [])
    if strategy == "v4":
        return [LevelPlan(True, True)] * len(levels)
    raise ValueError(f"unknown SIR strategy {strategy!r}; choose from {STRATEGIES}")


def select_negatives(columns: torch.Tensor, scores: torch.Tensor | None, keep: int, mode: str,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The next level's samples [blocks, 1 + keep]: the positive (column 0, always kept) then `keep` negatives.

    columns, scores: [blocks, width] this level's block columns and their scores (None for Random). Top keeps the
    highest-scored negatives in descending order (ties by torch.topk); Random a uniform draw from `generator` (a CPU
    generator, so the draw is the same on any device). Selection never carries gradient.
    """
    blocks, width = columns.shape
    if keep > width - 1:
        raise ValueError(f"cannot keep {keep} negatives out of {width - 1}")
    if mode == "top":
        if scores is None:
            raise ValueError("Top selection needs the level's scores")
        order = scores.detach()[:, 1:].topk(keep, dim=-1).indices
    elif mode == "random":
        order = torch.rand(blocks, width - 1, generator=generator).argsort(-1)[:, :keep].to(columns.device)
    else:
        raise ValueError(f"unknown selection {mode!r}; choose from {SELECTIONS}")
    return torch.cat([columns[:, :1], columns[:, 1:].gather(1, order)], dim=1)


@dataclass
class LevelOutput:
    columns: torch.Tensor  # [blocks, width_i] block columns of this level's samples, the positive first
    scores: torch.Tensor | None  # [blocks, width_i], or None where the level was not scored


# score(level, columns [blocks, width], grad) -> scores [blocks, width]
LevelScorer = Callable[[int, torch.Tensor, bool], torch.Tensor]


def run_levels(score: LevelScorer, levels: Levels, plan: list[LevelPlan], blocks: int,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> list[LevelOutput]:
    """Run the levels of `plan` in sequence on `blocks` blocks of width levels.widths[0]."""
    columns = torch.arange(levels.widths[0], device=device).expand(blocks, -1)
    outputs = []
    for level, step in enumerate(plan):
        scores = score(level, columns, step.grad) if step.scored else None
        outputs.append(LevelOutput(columns, scores))
        if level + 1 < len(plan):
            columns = select_negatives(columns, scores, levels.kept_negatives(level), levels.selection[level],
                                       generator)
    return outputs


def cpr_logits(outputs: list[LevelOutput], level: int, mode: str = "softmax") -> torch.Tensor:
    """The values whose softmax is CPR_level (Eq. 7), on level `level`'s samples.

    P_j = softmax of level j's scores over level j's own samples; each survivor's P_j is gathered from its position
    at level j. "softmax" (Eq. 7 as printed): softmax(P_1 * ... * P_i), so the product itself is returned.
    "normalize": the product renormalised over the survivors (a conditional probability), i.e. softmax of
    sum_j log P_j, so the log-product is returned.
    """
    target = outputs[level].columns
    log_product = 0.0
    for earlier in outputs[: level + 1]:
        position = (earlier.columns.unsqueeze(1) == target.unsqueeze(2)).int().argmax(-1)  # [blocks, width_level]
        scores = earlier.scores.to(torch.promote_types(earlier.scores.dtype, torch.float32))  # bf16 -> float32
        log_product = log_product + scores.log_softmax(-1).gather(1, position)
    if mode == "softmax":
        return log_product.exp()
    if mode == "normalize":
        return log_product
    raise ValueError(f"unknown CPR mode {mode!r}; choose from {CPR_MODES}")


def level_losses(strategy: str, outputs: list[LevelOutput], cpr: str = "softmax") -> dict[int, torch.Tensor]:
    """The loss terms of a strategy, by level (their sum is the training loss)."""
    if strategy == "v4":
        return {level: compressor_loss(cpr_logits(outputs, level, cpr)) for level in range(len(outputs))}
    trained = [0, len(outputs) - 1] if strategy == "v3" else [len(outputs) - 1]
    return {level: compressor_loss(outputs[level].scores) for level in dict.fromkeys(trained)}
