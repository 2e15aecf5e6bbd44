"""BERT's masked-language-model corruption over tokenised (query, document) pairs.

Each real token (never [CLS]/[SEP]/[PAD] or another special token) is selected with probability `rate`, or
`query_rate` in the query segment (token type 0) when given. A selected token becomes [MASK] 80% of the time, a
random token 10% and stays itself 10%; its label is the original id, and every other label is -100 (ignored).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100  # what torch's cross-entropy skips


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    rate: float = 0.15,
    query_rate: float | None = None,
    token_type_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (corrupted input ids, labels), both shaped like `input_ids`; the input is not modified."""
    for name, value in (("rate", rate), ("query_rate", query_rate)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"masking {name} must be in [0, 1], got {value}")
    if query_rate is not None and token_type_ids is None:
        raise ValueError("query_rate needs token_type_ids to know which tokens belong to the query")
    maskable = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(list(special_ids), device=input_ids.device))
    probability = torch.full(input_ids.shape, rate, device=input_ids.device)
    if query_rate is not None:
        probability[token_type_ids == 0] = query_rate
    # random numbers on the CPU generator's side, then moved: the same draws on CPU and GPU
    draws = torch.rand((2, *input_ids.shape), generator=generator).to(input_ids.device)
    selected = maskable & (draws[0] < probability)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    action = draws[1]
    corrupted = input_ids.clone()
    corrupted[selected & (action < 0.8)] = mask_id
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(input_ids.device)
    corrupted[to_random] = random_ids[to_random]
    return corrupted, labels
