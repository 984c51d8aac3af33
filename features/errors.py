"""The project's exception types: what a user can fix, kept apart from bugs.

Every error caused by what a user gave (a data file, a config, a parameter, a
model directory) raises a subclass of :class:`UserInputError`. Command-line
entry points report these as one line and exit 2; any other exception is a bug
and keeps its traceback. Each type also subclasses the built-in that fits, so
callers may catch ``ValueError`` or ``TypeError`` as well.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = [
    "BattleFormatError",
    "ConfigError",
    "DataFileError",
    "InvalidParameterError",
    "ModelIntegrityError",
    "NotFittedError",
    "UserInputError",
]


class UserInputError(Exception):
    """Base of every error a user can fix; the message says what and where."""


class BattleFormatError(UserInputError, ValueError):
    """Input battles that cannot be read or repaired; the message names rows."""


class DataFileError(UserInputError, ValueError):
    """A data file that cannot be read as battles (empty, wrong delimiter, zip)."""


class ConfigError(UserInputError, ValueError):
    """A profile that cannot be loaded; the message names the key and file."""


class InvalidParameterError(UserInputError, ValueError, TypeError):
    """An estimator or block parameter outside its allowed values.

    It is a ``TypeError`` too, as scikit-learn's own ``InvalidParameterError``
    is, so a wrong type and a wrong value can be caught either way.
    """


class ModelIntegrityError(UserInputError, ValueError):
    """A model directory that fails its manifest or format-version check."""


class NotFittedError(UserInputError, _SklearnNotFittedError):
    """A predict or transform method called before ``fit`` (scikit-learn's type too)."""
