"""Typed errors. Pure Python: the on-device runtime imports this module too."""

from __future__ import annotations


class EdgeslimError(Exception):
    """Base class of every error edgeslim raises on purpose."""


class RecipeError(EdgeslimError):
    """A recipe file is missing, is not valid YAML, or does not match the schema."""


class DataError(EdgeslimError):
    """A data file is missing, differs from its recorded sha256, or cannot be parsed."""


class ExportError(EdgeslimError):
    """A model could not be exported, or the export does not match its source."""


class StepError(EdgeslimError):
    """A compression step cannot run on the model it was given."""


class BundleError(EdgeslimError):
    """A bundle is incomplete, tampered with, or of an unsupported format."""


class BackendError(EdgeslimError):
    """The inference backend a bundle needs is missing or refuses the model."""


class MissingExtraError(EdgeslimError):
    """A step or target needs an optional dependency group (an extra) that is not installed."""


class InputError(EdgeslimError, ValueError):
    """Input passed to an encoder is not what the bundle accepts."""


class TargetError(EdgeslimError):
    """An unknown target name, or a target asked for something it does not support."""


class BudgetExceeded(EdgeslimError):
    """A bundle the recipe marks as required misses its budget."""

    def __init__(self, message: str, failures: list[str]):
        super().__init__(message)
        self.failures = failures


class OutputError(EdgeslimError):
    """An output path that would overwrite or delete something (without --force), or that is
    not a place a new file or folder can go."""


class ReportError(EdgeslimError):
    """A report file that is missing, unreadable or not an edgeslim report."""


class SignatureError(BundleError):
    """Trusted keys are configured and a bundle is unsigned, signed by a key that is not trusted,
    or changed after it was signed (its manifest or one of its files)."""


class StudyError(EdgeslimError):
    """The search's study storage is unreachable or not one edgeslim can use, or the named study
    was made from another recipe."""
