"""Errors users can act on.

Every error raised on purpose by vlm-export is a :class:`VLMExportError`: the CLI prints it as one line
(the problem, then the fix) and exits non-zero, and library users can catch one base class. Anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class VLMExportError(Exception):
    """Base class: ``message`` says what is wrong, ``fix`` says what to do about it."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


class UnsupportedModelError(VLMExportError):
    """The checkpoint's architecture has no family file in ``vlm_export/models``."""


class ModelLoadError(VLMExportError):
    """The source is not a usable checkpoint (missing folder, missing files, unreadable config)."""


class OutputExistsError(VLMExportError):
    """The output folder exists, is not empty, and ``--overwrite`` was not given."""


class ManifestError(VLMExportError):
    """The exported folder's manifest is missing, malformed, too new, or does not match its files."""


class ImageError(VLMExportError):
    """An input image cannot be read or decoded."""


class PromptError(VLMExportError):
    """The prompt and the images do not fit together (placeholders vs images, no chat template)."""


class ParityError(VLMExportError):
    """The exported graphs do not reproduce the PyTorch model within tolerance."""

    exit_code = 3


class BackendError(VLMExportError):
    """A runtime backend is not installed or cannot run a graph."""
