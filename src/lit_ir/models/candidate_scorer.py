"""CODER's document-set scoring function phi(g(Z), X): relevance of a query's N candidate embeddings at once.

- `DotProductScorer`: Eq. 2 of the paper, s = X . g(Z). No parameters; what every reported result uses, and the
  only scorer with which the trained query encoder also works for single-stage dense retrieval.
- `TransformerScorer` (paper A.3): the candidate embeddings (and the query) pass through transformer blocks WITHOUT
  positional encodings, so each document's score depends on its peers but not on their order (permutation
  equivariant); the transformed embeddings are then scored by inner product. Its output projection starts at zero,
  so an untrained scorer equals the dot product and training starts from the base model's ranking.

Inputs: query [b, d], docs [b, n, d], mask [b, n] (False = padding) -> scores [b, n].

`scale` multiplies the scores (rankings are unchanged): the listwise loss is a softmax over them, and the unit
vectors of a cosine-similarity encoder (MiniLM) give scores in [-1, 1], a softmax over 1,000 candidates that is
nearly uniform whatever the query encoder does. Such encoders were trained with a scale (sentence-transformers'
MultipleNegativesRankingLoss: 20); use the same here. The paper's dot-product models (TAS-B, RepBERT) score in
the tens to hundreds and keep 1.
"""

from __future__ import annotations

import torch
from torch import nn


class DotProductScorer(nn.Module):
    def __init__(self, dim: int | None = None, scale: float = 1.0):
        super().__init__()  # dim is accepted so every scorer is built the same way
        self.scale = _check_scale(scale)

    def forward(self, query: torch.Tensor, docs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.einsum("bd,bnd->bn", query, docs)


class TransformerScorer(nn.Module):
    def __init__(self, dim: int, d_model: int = 256, num_layers: int = 2, num_heads: int = 4,
                 dim_feedforward: int = 1024, dropout: float = 0.1, scale: float = 1.0):
        super().__init__()
        self.scale = _check_scale(scale)
        self.project_in = nn.Linear(dim, d_model)
        block = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, batch_first=True)
        self.blocks = nn.TransformerEncoder(block, num_layers, enable_nested_tensor=False)
        self.project_out = nn.Linear(d_model, dim)
        nn.init.zeros_(self.project_out.weight)
        nn.init.zeros_(self.project_out.bias)

    def forward(self, query: torch.Tensor, docs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # the query is one more (always present) element of the set, so documents are contextualised by it too
        tokens = torch.cat([query.unsqueeze(1), docs], dim=1)
        padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)
        hidden = self.blocks(self.project_in(tokens), src_key_padding_mask=padding)
        contextual = docs + self.project_out(hidden[:, 1:])  # residual: the base embeddings plus a learned shift
        return self.scale * torch.einsum("bd,bnd->bn", query, contextual)


def _check_scale(scale: float) -> float:
    if not scale > 0:
        raise ValueError(f"the score scale must be > 0 (it must not reverse or flatten rankings), got {scale}")
    return float(scale)
