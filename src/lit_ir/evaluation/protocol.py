"""Which metrics, at which relevance levels, a collection's config evaluates each split with.

A collection config (conf/collection/*.yaml) carries its evaluation protocol:

    metrics: [mrr@10, ndcg@10, map]           # every split's metrics
    relevance_level: 1                        # binary-metric threshold, and which queries are evaluated ...
    relevance_levels: {}                      # ... per split
    relevance_readings:                       # splits whose grades are read several ways (TREC DL: lenient / strict):
      dl19: {lenient: 1, strict: 2}           #   every metric is reported once per reading, as <metric>-l<level>

A metric written with "-l<level>" keeps that level (`lit_ir.evaluation.metrics`); at a graded metric the level
zeroes the gains below it, so "ndcg@10-l2" is strict nDCG (a grade-1 document gains nothing). The queries
evaluated are the split's (`relevance_level`): with readings 1 and 2 over level 1, a query with no grade-2
document scores 0 on every strict metric, as trec_eval -l2 scores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lit_ir.errors import InputError


@dataclass(frozen=True)
class SplitProtocol:
    metrics: list[str]  # names as reported: "<metric>-l<level>" for each reading of a split with readings
    relevance_level: int
    readings: dict[str, int] = field(default_factory=dict)  # reading name -> level, e.g. {"lenient": 1, "strict": 2}

    def describe(self) -> str:
        """e.g. "-l1 lenient (grade >= 1), -l2 strict (grade >= 2)"; empty without readings."""
        return ", ".join(f"-l{level} {name} (grade >= {level})" for name, level in self.readings.items())


def split_protocol(protocol: Mapping, split: str) -> SplitProtocol:
    """The protocol of `split`, from a collection config or anything with the same keys (a module's
    hyper-parameters)."""
    metrics = list(protocol.get("metrics") or [])
    if not metrics:
        raise InputError(f"no metrics to evaluate split {split!r} with: set the collection's `metrics`")
    level = int((protocol.get("relevance_levels") or {}).get(split, protocol.get("relevance_level", 1)))
    readings = dict((protocol.get("relevance_readings") or {}).get(split) or {})
    for name, reading in readings.items():
        if not (isinstance(reading, int) and reading >= 1):
            raise InputError(f"relevance_readings.{split}.{name}: a relevance level >= 1 is needed, got {reading!r}")
    if readings:
        # a metric that names its level already is one reading; the others get one column per reading
        metrics = [variant for metric in metrics
                   for variant in ([metric] if "-l" in metric else [f"{metric}-l{r}" for r in readings.values()])]
    return SplitProtocol(metrics, level, readings)
