"""Query prediction with an MLM head (the coarse-tuning paper's analysis): given a document, how query-like is the
text the model predicts in the query segment, and how likely are real (held-out) clicked queries?

- `query_log_likelihood`: pseudo-log-likelihood of a real query given its document: each query token masked in
  turn (`[CLS] q_1 .. [MASK] .. q_n [SEP] d [SEP]`), the log-probability of the true token, averaged per token.
- `predict_query`: `[CLS] [MASK] x n [SEP] d [SEP]`, every masked position predicted at once (no specials);
  `recall@k` = share of the real query's distinct tokens among the top-k predictions of any masked position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lit_ir.data.collections import Click
from lit_ir.models.coarse import CoarseTuningModel
from lit_ir.models.tokenization import PairTokenizer


@dataclass
class QueryPredictor:
    model: CoarseTuningModel
    tokenizer: PreTrainedTokenizerBase
    max_query_length: int = 32
    max_length: int = 256

    @classmethod
    def from_pretrained(cls, path: str | Path, **lengths) -> "QueryPredictor":
        """Any masked-LM folder: a pre-trained model, a coarse-tuned export (a model without an MLM head gets a
        random one, which the measures then expose)."""
        torch.manual_seed(0)  # a new MLM head, if any, is the same on every call
        return cls(CoarseTuningModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), **lengths)

    def __post_init__(self) -> None:
        self.pairs = PairTokenizer(self.tokenizer, self.max_query_length, self.max_length)

    def _query_ids(self, query: str) -> list[int]:
        return self.tokenizer(query, add_special_tokens=False, truncation=True,
                              max_length=self.max_query_length)["input_ids"]

    @torch.no_grad()
    def query_log_likelihood(self, query: str, doc: str) -> tuple[float, int]:
        """(sum of log p(true token) over the query's tokens, number of tokens), one token masked at a time."""
        query_ids = self._query_ids(query)
        if not query_ids:
            return 0.0, 0
        inputs = self.pairs([query] * len(query_ids), [doc] * len(query_ids))
        positions = torch.arange(len(query_ids)) + len(self.pairs.before)  # after [CLS]
        rows = torch.arange(len(query_ids))
        inputs["input_ids"][rows, positions] = self.tokenizer.mask_token_id
        logits = self.model.token_logits(**inputs)[rows, positions]
        log_probs = torch.log_softmax(logits.float(), dim=-1)[rows, torch.tensor(query_ids)]
        return float(log_probs.sum()), len(query_ids)

    @torch.no_grad()
    def predict_query(self, doc: str, num_tokens: int, k: int = 10) -> list[list[int]]:
        """Top-k token ids (specials excluded) at each of `num_tokens` masked query positions."""
        placeholder = " ".join([self.tokenizer.mask_token] * num_tokens)
        inputs = self.pairs([placeholder], [doc])
        start = len(self.pairs.before)
        logits = self.model.token_logits(**inputs)[0, start : start + num_tokens].float()
        logits[:, self.tokenizer.all_special_ids] = -math.inf
        return logits.topk(k, dim=-1).indices.tolist()


def analyse_query_prediction(predictors: Mapping[str, QueryPredictor], clicks: Sequence[Click],
                             docs: Mapping[str, str], k: int = 10, num_examples: int = 5) -> dict:
    """Per model: mean per-token log-likelihood of the real queries (and its perplexity), recall@1 and recall@k of
    their tokens in predicted queries; plus `num_examples` printed examples (document, real and predicted query)."""
    if not clicks:
        raise ValueError("query prediction needs at least one held-out click")
    summary, examples = {}, []
    for name, predictor in predictors.items():
        log_likelihood, tokens, recall_1, recall_k = 0.0, 0, [], []
        for index, click in enumerate(clicks):
            doc = docs[click.doc_id]
            total, count = predictor.query_log_likelihood(click.query, doc)
            log_likelihood, tokens = log_likelihood + total, tokens + count
            real = set(predictor._query_ids(click.query))
            if not real:
                continue
            top = predictor.predict_query(doc, len(predictor._query_ids(click.query)), k)
            recall_1.append(len(real & {ids[0] for ids in top}) / len(real))
            recall_k.append(len(real & {token for ids in top for token in ids}) / len(real))
            if index < num_examples:
                if len(examples) <= index:
                    examples.append({"query_id": click.query_id, "doc_id": click.doc_id, "doc": doc[:200],
                                     "query": click.query, "predicted": {}})
                examples[index]["predicted"][name] = predictor.tokenizer.decode([ids[0] for ids in top])
        mean = log_likelihood / max(tokens, 1)
        summary[name] = {"log_likelihood_per_token": mean, "pseudo_perplexity": math.exp(-mean),
                         "recall@1": sum(recall_1) / max(len(recall_1), 1),
                         f"recall@{k}": sum(recall_k) / max(len(recall_k), 1),
                         "queries": len(clicks), "query_tokens": tokens}
    return {"summary": summary, "examples": examples}
