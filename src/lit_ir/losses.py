"""Ranking losses, each a small pure function of scores (and labels).

Shapes: `scores` is [queries, candidates] with the positive in column 0 for the listwise losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pointwise_bce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on each (query, document) pair: the coarse-tuning paper's fine-tuning objective."""
    return F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype))


def listwise_softmax_ce(scores: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over 1 positive (column 0) + n negatives per query (monoBERT/localized contrastive)."""
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, target)


def group_labels(scores: torch.Tensor) -> torch.Tensor:
    """Pointwise labels for a [queries, 1 + n] group layout: 1 for column 0, 0 elsewhere."""
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1.0
    return labels


RANKING_LOSSES = {
    "bce": lambda scores: pointwise_bce(scores, group_labels(scores)),
    "softmax_ce": listwise_softmax_ce,
}


# ---- SIR (Self-Involvement Ranker) ----------------------------------------------------------------------------------
def compressor_loss(scores: torch.Tensor) -> torch.Tensor:
    """SIR's compressor loss (Eq. 1-2), mean over blocks: -log P(pos) - sum_j log(1 - P(neg_j)), P = softmax over
    the block [blocks, 1 + n] with the positive in column 0.

    log(1 - P_j) is computed as logsumexp over the other columns minus logsumexp over all, which stays exact when
    P_j -> 1 (where log1p(-softmax) would round to log(0)).
    """
    log_total = scores.logsumexp(-1, keepdim=True)  # [blocks, 1]
    width = scores.shape[-1]
    eye = torch.eye(width, dtype=torch.bool, device=scores.device)
    others = scores.unsqueeze(-2).masked_fill(eye, float("-inf"))  # [blocks, width, width], row j without column j
    log_not = others.logsumexp(-1) - log_total  # log(1 - P_j)
    log_positive = scores[:, 0] - log_total[:, 0]
    return (-log_positive - log_not[:, 1:].sum(-1)).mean()


RANKING_LOSSES["sir_compressor"] = compressor_loss


# ---- coarse-tuning: MLM + Query-Document Pair Prediction ------------------------------------------------------
# Not a ranking loss (no `scores -> loss` shape), so it is not registered in RANKING_LOSSES.


def coarse_tuning_loss(mlm_logits: torch.Tensor | None, mlm_labels: torch.Tensor, qdpp_logits: torch.Tensor,
                       qdpp_labels: torch.Tensor, mlm_weight: float = 1.0,
                       qdpp_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, mlm, qdpp) with total = mlm_weight * MLM + qdpp_weight * QDPP (the paper: MLM + QDPP).

    MLM is the mean cross-entropy over the masked tokens (`mlm_logits` [masked, vocab], `mlm_labels` [masked]);
    with no masked token it is 0. QDPP is binary cross-entropy of one logit per pair (label 1 = clicked pair).
    """
    qdpp = pointwise_bce(qdpp_logits, qdpp_labels)
    if mlm_logits is None or mlm_labels.numel() == 0:
        # nothing masked: 0, still tied to the MLM head when given, so that DDP sees all parameters used
        mlm = mlm_logits.float().sum() * 0.0 if mlm_logits is not None else qdpp.new_zeros(())
    else:
        mlm = F.cross_entropy(mlm_logits.float(), mlm_labels)
    return mlm_weight * mlm + qdpp_weight * qdpp, mlm, qdpp

# ---- CODER: losses over a query's whole candidate list ------------------------------------------------------------
# Shapes: `scores`, `labels` and `mask` are [queries, candidates]. `labels` holds the relevance grade of each
# judged-relevant candidate and 0 elsewhere; `mask` is False where a row is padding (lists of unequal length are
# padded to the batch's longest). Padded candidates take no part in either loss.


def _check_relevant(labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    relevant = (labels > 0) & mask
    if not bool(relevant.any(dim=1).all()):
        raise ValueError("every query needs at least one relevant candidate (label > 0) among its unpadded ones")
    return relevant


def coder_listwise_kl(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CODER's ListNet loss, as in the authors' code: KLDiv(batchmean)(log_softmax(scores), softmax(targets)), with
    targets = the grades of judged-relevant candidates and -inf for every other one (so they get target mass 0)."""
    relevant = _check_relevant(labels, mask)
    targets = F.softmax(labels.to(scores.dtype).masked_fill(~relevant, float("-inf")), dim=1)
    log_probs = F.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
    # padded entries have target 0 and log-prob -inf; 0 * -inf is NaN, so give them a finite log-prob
    return F.kl_div(log_probs.masked_fill(~mask, 0.0), targets, reduction="batchmean")


def coder_max_margin(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                     margin: float = 1.0) -> torch.Tensor:
    """The paper's pairwise ablation ("Multi-Label Max Margin", torch's MultiLabelMarginLoss over the candidate list):
    per query, sum over (relevant j, non-relevant i) of max(0, margin - (s_j - s_i)), divided by the number of
    unpadded candidates; averaged over queries."""
    relevant = _check_relevant(labels, mask)
    non_relevant = mask & ~relevant
    hinge = F.relu(margin - (scores.unsqueeze(2) - scores.unsqueeze(1)))  # [q, j, i]
    pairs = relevant.unsqueeze(2) & non_relevant.unsqueeze(1)
    per_query = (hinge * pairs).sum(dim=(1, 2)) / mask.sum(dim=1)
    return per_query.mean()


CANDIDATE_LIST_LOSSES = {"kl": coder_listwise_kl, "max_margin": coder_max_margin}
