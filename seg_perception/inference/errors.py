"""Errors of the inference layer, importable without torch (the CLI reports them without a traceback)."""


class BackendError(RuntimeError):
    """A backend cannot run as asked (missing provider, wrong input); the message says what is available."""
