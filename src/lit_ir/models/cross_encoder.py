"""monoBERT-style cross-encoder: a transformer reads `[CLS] query [SEP] document [SEP]` and a linear head on
[CLS] gives the relevance score. The backbone can be any encoder architecture `models.backbone` loads (BERT,
ELECTRA, DistilBERT, RoBERTa)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from lit_ir.models.backbone import hidden_dropout, load_backbone, segment_count
from lit_ir.models.export import starts_new_head

log = logging.getLogger(__name__)
HEAD_FILE = "score_head.pt"
EXPORT_KIND = "cross_encoder"  # the kind in the manifest of a cross-encoder export


class CrossEncoder(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.dropout = nn.Dropout(hidden_dropout(backbone.config))
        self.score_head = nn.Linear(hidden, 1)
        # the document segment (token type 1) exists only where the backbone embeds two segments (not RoBERTa,
        # DistilBERT): elsewhere the pair is read as one segment
        self.segments = segment_count(backbone)

    @classmethod
    def from_pretrained(cls, path: str | Path, dropout: float | None = None, new_head: bool = False) -> "CrossEncoder":
        """Load the backbone from a local model folder (see `lit_ir.models.hub.resolve_model`).

        A folder written by `save_pretrained` also restores the score head; any other folder (a plain BERT, a
        coarse-tuned checkpoint) starts with a freshly initialised head. A lit_ir export that lost its head is an
        error (`lit_ir.models.export`), unless `new_head` asks for a new head.
        """
        fresh_head = starts_new_head(path, HEAD_FILE, new_head)
        # no pooler: monoBERT scores from the [CLS] vector, and an unused pooler breaks DDP's gradient sync
        model = cls(load_backbone(path, dropout=dropout))
        if fresh_head:
            log.info("%s: starting a new score head (%s)", path, "asked for" if new_head else f"no {HEAD_FILE}")
        else:
            model.score_head.load_state_dict(torch.load(Path(path) / HEAD_FILE, map_location="cpu"))
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """Write a Hugging Face folder (backbone) plus the score head, loadable by `from_pretrained`."""
        self.backbone.save_pretrained(path)
        torch.save(self.score_head.state_dict(), Path(path) / HEAD_FILE)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of shape [batch] for a batch of tokenised (query, document) pairs."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.segments >= 2:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**inputs).last_hidden_state
        return self.score_head(self.dropout(hidden[:, 0])).squeeze(-1)
