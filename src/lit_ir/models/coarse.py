"""The coarse-tuning model: a BERT encoder with its MLM head and a Query-Document Pair Prediction (QDPP) head.

The QDPP head is one logit on the final [CLS] vector (binary cross-entropy; equivalent to NSP's two-way softmax),
the same shape as the cross-encoder's score head, so it can optionally seed fine-tuning.
MLM logits are computed only at the masked positions: a full [batch, length, vocab] tensor would cost ~750 MB
for 32 x 192 tokens x 30K words.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel

from lit_ir.models.export import starts_new_head

QDPP_HEAD_FILE = "qdpp_head.pt"
EXPORT_KIND = "coarse_tuning"


class CoarseTuningModel(nn.Module):
    def __init__(self, mlm: PreTrainedModel):
        super().__init__()
        if not hasattr(mlm, "cls"):
            raise ValueError(f"{type(mlm).__name__} is not a BERT-style masked LM (no `cls` prediction head)")
        self.mlm = mlm
        hidden = mlm.config.hidden_size
        self.dropout = nn.Dropout(getattr(mlm.config, "hidden_dropout_prob", 0.1))
        self.qdpp_head = nn.Linear(hidden, 1)

    @property
    def config(self):
        return self.mlm.config

    @classmethod
    def from_pretrained(cls, path: str | Path, dropout: float | None = None,
                        new_head: bool = False) -> "CoarseTuningModel":
        """A model folder with an MLM head keeps it; one without (e.g. sentence-transformers MiniLM) gets a new
        head: its transform is freshly initialised and its decoder tied to the word embeddings. The QDPP head is
        loaded from a coarse-tuning export (one that lost it is an error unless `new_head`), new otherwise."""
        fresh_head = starts_new_head(path, QDPP_HEAD_FILE, new_head)
        config = AutoConfig.from_pretrained(path)
        if dropout is not None:
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
        model = cls(AutoModelForMaskedLM.from_pretrained(path, config=config))
        if not fresh_head:
            model.qdpp_head.load_state_dict(torch.load(Path(path) / QDPP_HEAD_FILE, map_location="cpu"))
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """A Hugging Face masked-LM folder (which `AutoModel` and the cross-encoder load) plus the QDPP head."""
        self.mlm.save_pretrained(path)
        torch.save(self.qdpp_head.state_dict(), Path(path) / QDPP_HEAD_FILE)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                mlm_positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """QDPP logits [batch] and MLM logits [masked tokens, vocab] at the `mlm_positions` (a bool mask)."""
        hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids).last_hidden_state
        qdpp_logits = self.qdpp_head(self.dropout(hidden[:, 0])).squeeze(-1)
        mlm_logits = self.mlm.cls(hidden[mlm_positions]) if mlm_positions is not None else None
        return qdpp_logits, mlm_logits

    def token_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """MLM logits at every position [batch, length, vocab], for analyses on small batches."""
        hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids).last_hidden_state
        return self.mlm.cls(hidden)
