"""monoBERT-style cross-encoder: a transformer reads `[CLS] query [SEP] document [SEP]` and a head turns its
output into the relevance score. The backbone can be any encoder architecture `models.backbone` loads (BERT,
ELECTRA, DistilBERT, RoBERTa).

Poolings (`pooling`, saved with the model):
- `cls`: a linear head on the [CLS] vector (monoBERT);
- `mean`: a linear head on the mean of the pair's token vectors (the pooling sentence-embedding models such as
  all-MiniLM-L6-v2 were trained with, so their [CLS] vector carries little);
- `segment_cosine`: scale * cosine(mean of the query segment, mean of the document segment) + bias, both means taken
  from the joint encoding. For a sentence-embedding backbone the new head starts from the model's own similarity
  (a warm start: a ranking close to the bi-encoder's from step 0), while attention across the pair still lets
  fine-tuning learn interactions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lit_ir.errors import InputError
from lit_ir.models.backbone import hidden_dropout, load_backbone, segment_count
from lit_ir.models.export import starts_new_head

log = logging.getLogger(__name__)
HEAD_FILE = "score_head.pt"
POOLING_FILE = "cross_encoder.json"
EXPORT_KIND = "cross_encoder"  # the kind in the manifest of a cross-encoder export
POOLINGS = ("cls", "mean", "segment_cosine")
COSINE_SCALE = 20.0  # the initial scale of segment_cosine: sentence-transformers' similarity scale for MiniLM


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def saved_pooling(path: str | Path) -> str | None:
    """The pooling a folder's score head was trained with; None for a folder without a score head."""
    if (pooling_file := Path(path) / POOLING_FILE).is_file():
        return json.loads(pooling_file.read_text())["pooling"]
    return "cls" if (Path(path) / HEAD_FILE).is_file() else None  # an export from before poolings were saved


class CrossEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown cross-encoder pooling {pooling!r}; choose one of {POOLINGS}")
        self.backbone, self.pooling = backbone, pooling
        hidden = backbone.config.hidden_size
        self.dropout = nn.Dropout(hidden_dropout(backbone.config))
        if pooling == "segment_cosine":  # score = weight * cosine + bias
            self.score_head = nn.Linear(1, 1)
            nn.init.constant_(self.score_head.weight, COSINE_SCALE)
            nn.init.zeros_(self.score_head.bias)
        else:
            self.score_head = nn.Linear(hidden, 1)
        # the document segment (token type 1) exists only where the backbone embeds two segments (not RoBERTa,
        # DistilBERT): elsewhere the pair is read as one segment
        self.segments = segment_count(backbone)

    @classmethod
    def from_pretrained(cls, path: str | Path, dropout: float | None = None, new_head: bool = False,
                        pooling: str | None = None) -> "CrossEncoder":
        """Load the backbone from a local model folder (see `lit_ir.models.hub.resolve_model`).

        A folder written by `save_pretrained` also restores the score head and its pooling (`pooling`, if given,
        must match it); any other folder (a plain BERT, a coarse-tuned checkpoint) starts with a freshly
        initialised head, pooling `pooling` (default cls). A lit_ir export that lost its head is an error
        (`lit_ir.models.export`), unless `new_head` asks for a new head.
        """
        fresh_head = starts_new_head(path, HEAD_FILE, new_head)
        saved = None if fresh_head else saved_pooling(path)
        if saved is not None and pooling is not None and pooling != saved:
            raise InputError(f"{path}: its score head was trained with pooling {saved!r}, not model.pooling="
                             f"{pooling!r} (set model.pooling={saved} or null)")
        # no pooler: the heads read token vectors, and an unused pooler breaks DDP's gradient sync
        model = cls(load_backbone(path, dropout=dropout), pooling=saved or pooling or "cls")
        if fresh_head:
            log.info("%s: starting a new %s score head (%s)", path, model.pooling,
                     "asked for" if new_head else f"no {HEAD_FILE}")
        else:
            model.score_head.load_state_dict(torch.load(Path(path) / HEAD_FILE, map_location="cpu"))
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """Write a Hugging Face folder (backbone) plus the score head and its pooling, loadable by `from_pretrained`."""
        self.backbone.save_pretrained(path)
        torch.save(self.score_head.state_dict(), Path(path) / HEAD_FILE)
        (Path(path) / POOLING_FILE).write_text(json.dumps({"pooling": self.pooling}) + "\n")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of shape [batch] for a batch of tokenised (query, document) pairs."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.segments >= 2:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**inputs).last_hidden_state
        if self.pooling == "segment_cosine":
            if token_type_ids is None:
                raise ValueError("pooling segment_cosine needs token_type_ids to find the query and the document")
            query = _masked_mean(hidden, attention_mask * (token_type_ids == 0))
            document = _masked_mean(hidden, attention_mask * (token_type_ids == 1))
            return self.score_head(F.cosine_similarity(query, document, dim=-1).unsqueeze(-1)).squeeze(-1)
        pooled = hidden[:, 0] if self.pooling == "cls" else _masked_mean(hidden, attention_mask)
        return self.score_head(self.dropout(pooled)).squeeze(-1)
