"""Training blocks for SIR: each query's 1 positive + exactly `num_negatives` distinct first-stage negatives.

The reranking DataModule pads a short candidate pool by sampling with replacement; a SIR level could then keep one
document twice, so a query whose pool is too short is an error here, or (`short_pools: drop`) left out with a
warning that counts it.
"""

from __future__ import annotations

import logging

from lit_ir.data.rerank import GroupDataset, RerankDataModule

log = logging.getLogger(__name__)
SHORT_POOL_POLICIES = ("error", "drop")


class SIRBlockDataModule(RerankDataModule):
    def __init__(self, *args, short_pools: str = "error", **kwargs):
        super().__init__(*args, **kwargs)
        if short_pools not in SHORT_POOL_POLICIES:
            raise ValueError(f"data.short_pools={short_pools!r}: choose from {SHORT_POOL_POLICIES}")
        self.short_pools = short_pools
        self._checked = False

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.train_dataset is None or self._checked:
            return
        groups = self.train_dataset.groups
        if no_positive := [group.query_id for group in groups if not group.positives]:
            raise ValueError(f"{len(no_positive)} training blocks have no positive (e.g. queries {no_positive[:5]})")
        short = [group.query_id for group in groups if len(group.negatives) < self.num_negatives]
        if short and self.short_pools == "error":
            raise ValueError(f"{len(short)} of {len(groups)} training queries have fewer than {self.num_negatives} "
                             f"first-stage negatives for blocks of 1 + {self.num_negatives} (e.g. {short[:5]}): lower "
                             f"the levels, raise data.train_depth / data.first_stage.k, or set data.short_pools=drop")
        if short:
            log.warning("%d of %d training queries have fewer than %d first-stage negatives and are not trained on "
                        "(data.short_pools=drop; e.g. %s)", len(short), len(groups), self.num_negatives, short[:5])
            kept = [group for group in groups if group.query_id not in set(short)]
            if not kept:
                raise ValueError(f"no training query has {self.num_negatives} first-stage negatives")
            self.train_dataset = GroupDataset(kept, self.train_dataset.docs, self.num_negatives, self.seed,
                                              self.per_positive)
        self._checked = True
