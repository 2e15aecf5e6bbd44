"""Interpolation of a reranker with the first stage it reranked, the standard fusion for rerankers:

    score(q, d) = w * norm(first_stage(q, d)) + (1 - w) * norm(reranker(q, d))

over each query's reranked candidates, `norm` per query: `minmax` ((s - min) / (max - min)) or `zscore`
((s - mean) / std); a query whose scores are all equal normalises to 0. Weight 0 is the pure reranker, 1 the first
stage. The weight is chosen on a validation split (`select_first_stage_weight`: the grid 0, step, ..., 1; among
equally good weights the smallest, the least change to the reranker) or fixed, and travels as a
`FirstStageWeight` (checkpoint, `first_stage_weight.json` in the run folder and the exported model).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lit_ir.data.trec import Run
from lit_ir.errors import InputError, some_ids
from lit_ir.evaluation import evaluate_run
from lit_ir.utils.io import write_json

NORMALIZATIONS = ("minmax", "zscore")
WEIGHT_FILE = "first_stage_weight.json"


def normalize_scores(docs: dict[str, float], normalization: str = "minmax") -> dict[str, float]:
    """One query's scores, normalised (see the module docstring); equal scores all become 0."""
    if normalization not in NORMALIZATIONS:
        raise InputError(f"unknown score normalization {normalization!r}; choose one of {NORMALIZATIONS}")
    if not docs:
        return {}
    values = list(docs.values())
    if normalization == "minmax":
        low, high = min(values), max(values)
        scale, shift = (high - low), low
    else:
        shift = sum(values) / len(values)
        scale = math.sqrt(sum((value - shift) ** 2 for value in values) / len(values))
    if scale == 0:
        return {doc_id: 0.0 for doc_id in docs}
    return {doc_id: (score - shift) / scale for doc_id, score in docs.items()}


def interpolate(reranked: Run, first_stage: Run, weight: float, normalization: str = "minmax") -> Run:
    """The interpolated run over `reranked`'s candidates (each must have a first-stage score)."""
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"the first-stage weight must be in [0, 1], got {weight}")
    fused: Run = {}
    for query_id, docs in reranked.items():
        retrieved = first_stage.get(query_id, {})
        if missing := [doc_id for doc_id in docs if doc_id not in retrieved]:
            raise InputError(f"query {query_id!r}: reranked documents without a first-stage score: "
                             f"{some_ids(missing)}")
        model = normalize_scores(docs, normalization)
        first = normalize_scores({doc_id: retrieved[doc_id] for doc_id in docs}, normalization)
        fused[query_id] = {doc_id: weight * first[doc_id] + (1.0 - weight) * model[doc_id] for doc_id in docs}
    return fused


def weight_grid(step: float) -> list[float]:
    """0, step, 2 step, ..., 1 (step must divide 1)."""
    count = round(1.0 / step) if step > 0 else 0
    if count < 1 or not math.isclose(count * step, 1.0, rel_tol=1e-9):
        raise InputError(f"the first-stage weight grid step must divide 1 (e.g. 0.05), got {step}")
    return [round(index / count, 12) for index in range(count + 1)]


@dataclass(frozen=True)
class FirstStageWeight:
    """A first-stage weight and where it came from (`selected_on`: the validation split, or None when fixed)."""

    weight: float
    normalization: str = "minmax"
    selected_on: str | None = None
    metric: str | None = None
    value: float | None = None  # the validation metric at `weight`
    reranker_value: float | None = None  # ... at weight 0 (the pure reranker)
    first_stage_value: float | None = None  # ... at weight 1 (the first stage)

    def __post_init__(self):
        if not 0.0 <= self.weight <= 1.0:
            raise InputError(f"the first-stage weight must be in [0, 1], got {self.weight}")
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"unknown score normalization {self.normalization!r}; choose one of {NORMALIZATIONS}")

    def apply(self, reranked: Run, first_stage: Run) -> Run:
        return interpolate(reranked, first_stage, self.weight, self.normalization)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "a checkpoint") -> "FirstStageWeight":
        try:
            return cls(**data)
        except TypeError as err:
            raise InputError(f"{source}: not a first-stage weight record ({err})") from None

    def save(self, folder: str | os.PathLike) -> Path:
        return write_json(self.as_dict(), Path(folder) / WEIGHT_FILE)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "FirstStageWeight | None":
        """The weight saved in `folder`, or None if it has none."""
        path = Path(folder) / WEIGHT_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, source=str(path))


def select_first_stage_weight(reranked: Run, first_stage: Run, qrels, metric: str, relevance_level: int = 1,
                              normalization: str = "minmax", step: float = 0.05,
                              split: str | None = None) -> FirstStageWeight:
    """The grid weight that maximises `metric` of the interpolated run on `qrels`; ties go to the smallest."""
    values = {weight: evaluate_run(interpolate(reranked, first_stage, weight, normalization), qrels, [metric],
                                   relevance_level)[metric]
              for weight in weight_grid(step)}
    best = max(values, key=lambda weight: (values[weight], -weight))
    return FirstStageWeight(best, normalization, split, metric, values[best], values[0.0], values[1.0])
