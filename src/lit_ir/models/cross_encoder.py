"""monoBERT-style cross-encoder: a transformer reads `[CLS] query [SEP] document [SEP]` and a linear head on
[CLS] gives the relevance score. The backbone can be any encoder architecture `models.backbone` loads (BERT,
ELECTRA, DistilBERT, RoBERTa)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lit_ir.models.backbone import hidden_dropout, load_backbone, segment_count

HEAD_FILE = "score_head.pt"


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
    def from_pretrained(cls, path: str | Path, dropout: float | None = None) -> "CrossEncoder":
        """Load the backbone from a local model folder (see `lit_ir.models.hub.resolve_model`).

        A folder written by `save_pretrained` also restores the score head; any other folder (a plain BERT, a
        coarse-tuned checkpoint) starts with a freshly initialised head.
        """
        # no pooler: monoBERT scores from the [CLS] vector, and an unused pooler breaks DDP's gradient sync
        model = cls(load_backbone(path, dropout=dropout))
        if (head := Path(path) / HEAD_FILE).is_file():
            model.score_head.load_state_dict(torch.load(head, map_location="cpu"))
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
