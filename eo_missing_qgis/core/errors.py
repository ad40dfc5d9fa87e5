"""Errors the engine raises for things a user can fix, and the cancellation signal.

They subclass :class:`ValueError` (or :class:`Exception` for :class:`Cancelled`) so the plugin and
the CLI can show their message as it is, without a traceback.
"""

from __future__ import annotations

from .dependencies import install_hint


class InputError(ValueError):
    """The layers given do not provide what the model needs (missing, ambiguous, unreadable...)."""


class ModelError(ValueError):
    """The ONNX file cannot be used: unreadable, corrupt, or its graph disagrees with its card."""


class OutputError(ValueError):
    """The destination cannot be written (not writable, equal to an input, disk full...)."""


class OptionError(ValueError):
    """A run option is out of its range (tile size, memory budget, time index...)."""


class Cancelled(Exception):  # noqa: N818 (a signal, not an error)
    """The caller cancelled the run; no output was left behind."""


class DependencyError(ImportError):
    """An optional dependency (onnxruntime, rasterio) is not installed."""


def missing_dependency(package: str, purpose: str) -> DependencyError:
    """The error for a missing optional package, with how to install it."""
    return DependencyError(f"{package} is needed to {purpose}. {install_hint([package])}")
