"""Hugging Face encoder backbones of any architecture the rankers meet: BERT, ELECTRA, DistilBERT, RoBERTa, ...

The architectures differ where the rankers touch them:
- only some model classes build a pooler and take `add_pooling_layer` (BERT, RoBERTa); ELECTRA and DistilBERT
  have none and reject the argument. The pooler is unused here, and unused weights break DDP's gradient sync;
- dropout is `hidden_dropout_prob` / `attention_probs_dropout_prob` (BERT, ELECTRA, RoBERTa) or `dropout` /
  `attention_dropout` (DistilBERT);
- segment (token type) embeddings: BERT and ELECTRA have two, RoBERTa one (type 1 is out of range), DistilBERT
  none (its forward takes no `token_type_ids`).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from torch import nn
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_MAPPING

# (hidden, attention) dropout names per config layout
DROPOUT_FIELDS = (("hidden_dropout_prob", "attention_probs_dropout_prob"), ("dropout", "attention_dropout"))
DEFAULT_DROPOUT = 0.1


def load_backbone(path: str | Path, dropout: float | None = None) -> nn.Module:
    """The encoder of the model folder `path` (no task head, no pooler); `dropout` overrides the model's own."""
    config = AutoConfig.from_pretrained(path)
    if dropout is not None:
        set_dropout(config, dropout)
    model_class = MODEL_MAPPING[type(config)]
    has_pooler = "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    return model_class.from_pretrained(path, config=config, **({"add_pooling_layer": False} if has_pooler else {}))


def set_dropout(config: PretrainedConfig, probability: float) -> None:
    fields = [field for pair in DROPOUT_FIELDS for field in pair if hasattr(config, field)]
    if not fields:
        raise ValueError(f"{type(config).__name__} has none of the dropout settings {DROPOUT_FIELDS}")
    for field in fields:
        setattr(config, field, probability)


def hidden_dropout(config: PretrainedConfig) -> float:
    """The dropout the model applies to hidden states (for a head on top of it)."""
    for hidden, _ in DROPOUT_FIELDS:
        if getattr(config, hidden, None) is not None:
            return float(getattr(config, hidden))
    return DEFAULT_DROPOUT


def segment_count(backbone: nn.Module) -> int:
    """How many token types (segments) `backbone` embeds: 0 when its forward takes no `token_type_ids`."""
    if "token_type_ids" not in inspect.signature(backbone.forward).parameters:
        return 0
    return int(getattr(backbone.config, "type_vocab_size", 0) or 0)
