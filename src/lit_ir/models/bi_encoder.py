"""Dense bi-encoder: a transformer embeds queries and documents separately; relevance is dot product or cosine.

The query and document encoders share one set of weights (TAS-B, RepBERT, BERT-Dot as released) or have separate
weights (CODER fine-tunes the query encoder only, so after training the two differ). A text's embedding is the
[CLS] vector (`pooling="cls"`: TAS-B, BERT-Dot) or the mean of its token vectors over the attention mask
(`pooling="mean"`: RepBERT, sentence-transformers MiniLM). With `similarity="cosine"` embeddings are L2-normalised,
so a plain inner product (FAISS IndexFlatIP, `score`) gives cosine similarity. Each side can be read as its own
segment (`query_token_type`, `doc_token_type`): RepBERT encodes documents with token_type_ids = 1 and queries with 0.

Documents are encoded once into an `EmbeddingStore`; `fingerprint()` describes the document side so that a store
made by another model, pooling, length, segment or dimension is refused before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, BatchEncoding

from lit_ir.models.backbone import load_backbone, segment_count
from lit_ir.models.export import read_export
from lit_ir.models.hub import resolve_model
from lit_ir.models.tokenization import TruncationCount, check_length, was_cut

log = logging.getLogger(__name__)

Pooling = Literal["cls", "mean"]
Similarity = Literal["dot", "cosine"]
POOLINGS = ("cls", "mean")
SIMILARITIES = ("dot", "cosine")
CONFIG_FILE = "bi_encoder.json"
EXPORT_KIND = "bi_encoder"
DOC_ENCODER_DIR = "doc_encoder"  # the document encoder of a saved bi-encoder with separate weights
DEFAULTS = {"shared": True, "pooling": "cls", "similarity": "dot", "query_max_length": 32, "doc_max_length": 256,
            "query_token_type": 0, "doc_token_type": 0}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[batch, tokens, dim] token vectors -> [batch, dim]: the first ([CLS]) vector, or the mean over real tokens.

    The mean ignores padding, so a text embeds the same alone or in a batch with longer texts.
    """
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


class BiEncoder(nn.Module):
    def __init__(
        self,
        query_encoder: nn.Module,
        tokenizer,
        doc_encoder: nn.Module | None = None,
        pooling: Pooling = "cls",
        similarity: Similarity = "dot",
        query_max_length: int = 32,
        doc_max_length: int = 256,
        name: str = "",
        query_token_type: int = 0,
        doc_token_type: int = 0,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; choose one of {SIMILARITIES}")
        if query_max_length < 1 or doc_max_length < 1:
            raise ValueError(f"max lengths must be >= 1, got query {query_max_length}, doc {doc_max_length}")
        check_length(query_encoder.config, "encoder.query_max_length", query_max_length, name or "the query encoder")
        check_length((doc_encoder or query_encoder).config, "encoder.doc_max_length", doc_max_length,
                     name or "the document encoder")
        for side, token_type, encoder in (("query", query_token_type, query_encoder),
                                          ("doc", doc_token_type, doc_encoder or query_encoder)):
            if token_type and not 0 <= token_type < segment_count(encoder):
                raise ValueError(f"{side}_token_type={token_type}, but the encoder ({type(encoder).__name__}) embeds "
                                 f"{segment_count(encoder)} token types")
        self.query_token_type, self.doc_token_type = query_token_type, doc_token_type
        self.query_encoder = query_encoder
        # registered once when shared: parameters() yields each weight once and the optimizer sees no duplicates
        self.doc_encoder = query_encoder if doc_encoder is None else doc_encoder
        self.tokenizer = tokenizer
        self.pooling, self.similarity = pooling, similarity
        self.query_max_length, self.doc_max_length = query_max_length, doc_max_length
        self.name = name  # the model name the user gave (alias, Hub id or path): shown in fingerprints and errors

    @property
    def shared(self) -> bool:
        return self.doc_encoder is self.query_encoder

    @property
    def dim(self) -> int:
        return self.doc_encoder.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- loading and saving ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        shared: bool | None = None,
        pooling: Pooling | None = None,
        similarity: Similarity | None = None,
        query_max_length: int | None = None,
        doc_max_length: int | None = None,
        query_token_type: int | None = None,
        doc_token_type: int | None = None,
        query_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        vocab_texts: Iterable[str] | None = None,
    ) -> "BiEncoder":
        """Load from any name `resolve_model` accepts (local folder, `minilm`, `random-bert-HxL`, a Hub id).

        Settings left as None come from the folder's `bi_encoder.json` (written by `save_pretrained`), else from
        `DEFAULTS`. `query_path` starts the query encoder from another model (e.g. a CODER-trained one) while the
        documents keep `path`'s encoder; it implies separate weights. `shared=False` on a plain model gives two
        independent copies of it. `vocab_texts` only matters for `random-bert-*`, whose vocabulary is learned
        from them.
        """
        name = str(path)
        folder = resolve_model(name, cache_dir=cache_dir, vocab_texts=vocab_texts)
        read_export(folder)  # an export that lost its settings or document encoder fails here, naming them
        saved = json.loads((folder / CONFIG_FILE).read_text()) if (folder / CONFIG_FILE).is_file() else {}
        given = {"shared": shared, "pooling": pooling, "similarity": similarity,
                 "query_max_length": query_max_length, "doc_max_length": doc_max_length,
                 "query_token_type": query_token_type, "doc_token_type": doc_token_type}
        settings = {key: value if value is not None else saved.get(key, DEFAULTS[key]) for key, value in given.items()}
        name = saved.get("name", name) if folder == Path(name).expanduser() else name

        doc_folder = folder / DOC_ENCODER_DIR if (folder / DOC_ENCODER_DIR / "config.json").is_file() else folder
        query_folder = folder
        if query_path is not None:
            query_folder = resolve_model(str(query_path), cache_dir=cache_dir, vocab_texts=vocab_texts)
            read_export(query_folder)
            settings["shared"] = False
        elif doc_folder != folder:
            settings["shared"] = False  # a saved pair with trained query weights: never collapse it to one
        query_encoder = load_backbone(query_folder)
        doc_encoder = None if settings.pop("shared") else load_backbone(doc_folder)
        tokenizer = AutoTokenizer.from_pretrained(query_folder)
        return cls(query_encoder, tokenizer, doc_encoder, name=name, **settings)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write a folder `from_pretrained` reads back: the query encoder and tokenizer at the top, the document
        encoder under `doc_encoder/` when the weights are separate, and the settings in `bi_encoder.json`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.query_encoder.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        if not self.shared:
            self.doc_encoder.save_pretrained(path / DOC_ENCODER_DIR)
        settings = {"name": self.name, "shared": self.shared, "pooling": self.pooling, "similarity": self.similarity,
                    "query_max_length": self.query_max_length, "doc_max_length": self.doc_max_length,
                    "query_token_type": self.query_token_type, "doc_token_type": self.doc_token_type}
        (path / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        return path

    # ---- encoding ----------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str], max_length: int) -> BatchEncoding:
        """Padded to the longest text of the batch, not to max_length: short batches stay cheap."""
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    def tokenize_queries(self, texts: list[str], count: TruncationCount | None = None) -> dict[str, torch.Tensor]:
        """`count` (optional) adds the queries that were cut to query_max_length."""
        batch = self.tokenize(texts, self.query_max_length)
        if count is not None:
            count.add_queries(list(texts), was_cut(batch, self.query_max_length))
        return dict(batch)

    def tokenize_docs(self, texts: list[str], count: TruncationCount | None = None) -> dict[str, torch.Tensor]:
        """`count` (optional) adds the documents that were cut to doc_max_length."""
        batch = self.tokenize(texts, self.doc_max_length)
        if count is not None:
            count.add_documents(was_cut(batch, self.doc_max_length))
        return dict(batch)

    def embed(self, encoder: nn.Module, inputs: dict[str, torch.Tensor], token_type: int = 0) -> torch.Tensor:
        """Tokenised batch -> [batch, dim] embeddings, pooled, normalised when similarity is cosine. Every token
        (padding too, as RepBERT does) gets segment `token_type`."""
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        if token_type:
            inputs["token_type_ids"] = torch.full_like(inputs["input_ids"], token_type)
        hidden = encoder(**inputs).last_hidden_state
        embeddings = pool(hidden, inputs["attention_mask"], self.pooling)
        return F.normalize(embeddings, dim=-1) if self.similarity == "cosine" else embeddings

    def embed_queries(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed(self.query_encoder, inputs, self.query_token_type)

    def embed_docs(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embed(self.doc_encoder, inputs, self.doc_token_type)

    def encode_queries(self, texts: list[str], count: TruncationCount | None = None) -> torch.Tensor:
        """[n, dim]. Keeps the autograd graph (training the query encoder); wrap in torch.inference_mode to infer."""
        return self.embed_queries(self.tokenize_queries(texts, count))

    def encode_docs(self, texts: list[str]) -> torch.Tensor:
        """[n, dim]. Keeps the autograd graph; wrap in torch.inference_mode to precompute a store."""
        return self.embed_docs(self.tokenize_docs(texts))

    def score(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Relevance of documents to queries: q [b, dim] with d [b, n, dim] -> [b, n] (each query its own list),
        or d [n, dim] -> [b, n] (every query against the same documents).

        Cosine normalises both sides here too (idempotent for embeddings from `embed`), so documents from a store
        and freshly encoded queries can be passed as they are.
        """
        if self.similarity == "cosine":
            q, d = F.normalize(q, dim=-1), F.normalize(d, dim=-1)
        if d.dim() == 2:
            return q @ d.T
        return torch.einsum("bd,bnd->bn", q, d)

    # ---- identity ----------------------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """What decides a document embedding: model, pooling, similarity, document length and segment, dimension,
        and a hash of the document encoder's weights (so a fine-tuned copy under the same name is told apart)."""
        return {
            "model": self.name,
            "pooling": self.pooling,
            "similarity": self.similarity,
            "doc_max_length": self.doc_max_length,
            "doc_token_type": self.doc_token_type,
            "dim": self.dim,
            "weights_sha": weights_sha(self.doc_encoder),
        }


def weights_sha(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's parameters and buffers, by name, in a fixed order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()[:16]
