"""Errors that tell the user what is wrong and where (file and line, or the id)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence



class InputError(ValueError):
    """Malformed or inconsistent input: names the file and line, or the offending id."""


class CollectionUnavailableError(RuntimeError):
    """A collection needs files that are not available (e.g. a download while offline)."""


class ModelUnavailableError(RuntimeError):
    """A model could not be resolved from a name, a local path or an offline alias."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or weights: names the step, the loss and the learning rate."""



def some_ids(ids: Sequence[str], limit: int = 10) -> str:
    """The first `limit` ids for a log or error message."""
    return ", ".join(map(repr, ids[:limit])) + (", ..." if len(ids) > limit else "")


def check_doc_ids(doc_ids: Sequence[str], what: str) -> None:
    """InputError when `doc_ids` is empty or has duplicates; `what` is being built of them (an index, a store)."""
    if not doc_ids:
        raise InputError(f"cannot build {what} of an empty collection")
    if len(set(doc_ids)) != len(doc_ids):
        duplicates = [doc_id for doc_id, n in Counter(doc_ids).items() if n > 1]
        raise InputError(f"{what}: {len(duplicates)} duplicate document ids: {some_ids(duplicates)}")
