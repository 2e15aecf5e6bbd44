"""Errors that tell the user what is wrong and where (file and line, or the id)."""


class InputError(ValueError):
    """Malformed or inconsistent input: names the file and line, or the offending id."""


class CollectionUnavailableError(RuntimeError):
    """A collection needs files that are not available (e.g. a download while offline)."""


class ModelUnavailableError(RuntimeError):
    """A model could not be resolved from a name, a local path or an offline alias."""
