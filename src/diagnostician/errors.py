"""Typed errors shared by every layer; interfaces turn them into one-line messages."""

from __future__ import annotations


class DiagnosticianError(Exception):
    """Base class of every error the library raises on purpose."""


class PackError(DiagnosticianError):
    """A knowledge pack is missing, malformed or inconsistent."""


class InputError(DiagnosticianError):
    """Input from a user or a file is invalid (unknown code, value out of range, bad age...)."""


class UnknownFindingError(InputError):
    """A finding code that the loaded pack does not define."""


class InvalidAnswerError(InputError):
    """An answer whose value does not fit the finding it answers."""


class CaseFileError(InputError):
    """A case or patient file that cannot be read."""


class SessionError(DiagnosticianError):
    """An operation that the consultation's current state does not allow."""
