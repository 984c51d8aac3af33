"""One way to check the parameters of estimators and feature blocks.

Each class declares the allowed values of its parameters in a class attribute
``_allowed_values``: a dict from parameter name to a list of constraints, of
which the value must satisfy at least one. A constraint is one of

- :class:`Interval`: an int or a float within bounds;
- :class:`Options`: one of a few values (strings, ``True``/``False``, ...);
- a type such as ``bool``, ``str`` or ``collections.abc.Mapping``: an instance
  of it (a bool is never taken for a number);
- ``None``: the value ``None`` itself;
- :class:`Predicate`: any test, with the words that describe it.

:func:`check_parameters` checks the table in order, then calls the class's
``_check_parameter_combinations()`` method, if it has one, for the rules that
tie parameters together (``word_max_features`` and ``char_max_features`` not
both 0). A value outside its table raises
:class:`~features.errors.InvalidParameterError` with one message, naming the
parameter, its owner, the allowed values and the value received::

    The 'tol' parameter of TemperatureScaler must be a float in (0, 1). Got 0.0.

The attribute is not scikit-learn's ``_parameter_constraints``, which holds
scikit-learn's own constraint objects: scikit-learn's
``BaseEstimator._validate_params`` never reads this table.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np

from features.errors import InvalidParameterError

__all__ = [
    "Constraint",
    "ConstraintLike",
    "Interval",
    "Options",
    "ParameterTable",
    "Predicate",
    "check_parameter",
    "check_parameters",
    "describe",
]

_MAX_REPR = 200
"""Characters of a received value shown in a message (long dicts are cut)."""


class Constraint(ABC):
    """One allowed kind of value: a test and the words that describe it."""

    @abstractmethod
    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` is allowed by this constraint."""

    @abstractmethod
    def __str__(self) -> str:
        """The allowed values in words, e.g. ``"an int in [1, inf)"``."""


class Interval(Constraint):
    """Numbers of one kind between two bounds.

    Parameters
    ----------
    kind : {numbers.Integral, numbers.Real}
        - ``numbers.Integral``: Python and numpy ints.
        - ``numbers.Real``: ints and floats (numpy ones too).

        A bool is neither.
    low, high : float or None
        The bounds; None is unbounded on that side (and excludes the
        infinity there, so ``Interval(Real, 0, None, closed="neither")`` is a
        finite float > 0). NaN is never in an interval.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds belong to the interval.

    Examples
    --------
    >>> from numbers import Integral, Real
    >>> Interval(Integral, 1, None).is_satisfied_by(3)
    True
    >>> tol = Interval(Real, 0, 1, closed="neither")
    >>> str(tol), tol.is_satisfied_by(0.0)
    ('a float in (0, 1)', False)
    """

    def __init__(
        self,
        kind: type,
        low: float | None,
        high: float | None,
        *,
        closed: Literal["both", "left", "right", "neither"] = "both",
    ) -> None:
        if kind not in (numbers.Integral, numbers.Real):
            raise ValueError(f"Interval kind must be Integral or Real; got {kind!r}.")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(
                f"Interval closed must be 'both', 'left', 'right' or 'neither'; "
                f"got {closed!r}."
            )
        if low is not None and high is not None and low > high:
            raise ValueError(f"Interval low {low!r} is above high {high!r}.")
        self.kind = kind
        self.low = low
        self.high = high
        self.closed = closed

    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` is a number of :attr:`kind` within the bounds."""
        if isinstance(value, bool | np.bool_) or not isinstance(value, self.kind):
            return False
        closed_low, closed_high = self._closed_bounds()
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        above = value >= low if closed_low else value > low
        below = value <= high if closed_high else value < high
        return bool(above and below)

    def _closed_bounds(self) -> tuple[bool, bool]:
        """Whether the low and the high bound belong to the interval."""
        closed_low = self.low is not None and self.closed in ("both", "left")
        closed_high = self.high is not None and self.closed in ("both", "right")
        return closed_low, closed_high

    def __str__(self) -> str:
        closed_low, closed_high = self._closed_bounds()
        low = "-inf" if self.low is None else str(self.low)
        high = "inf" if self.high is None else str(self.high)
        noun = "an int" if self.kind is numbers.Integral else "a float"
        left, right = "[" if closed_low else "(", "]" if closed_high else ")"
        return f"{noun} in {left}{low}, {high}{right}"

    def __repr__(self) -> str:
        return (
            f"Interval({self.kind.__name__}, {self.low!r}, {self.high!r}, "
            f"closed={self.closed!r})"
        )


class Options(Constraint):
    """One of a few values, compared with their type.

    ``1`` is not ``True`` and ``0`` is not ``None``, although Python says
    ``1 == True``; numpy bools and strings count as Python ones.

    Parameters
    ----------
    values : iterable
        The allowed values; their order is the order of the message (pass a
        tuple, not a set, for a stable message).

    Examples
    --------
    >>> method = Options(("auto", "blend"))
    >>> method.is_satisfied_by("blend"), str(method)
    (True, "one of 'auto', 'blend'")
    >>> Options((False, True)).is_satisfied_by(1)
    False
    """

    def __init__(self, values: Iterable[Any]) -> None:
        self.values = tuple(values)
        if not self.values:
            raise ValueError("Options needs at least one allowed value.")

    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` is one of :attr:`values`, type included."""
        return any(_same_option(value, option) for option in self.values)

    def __str__(self) -> str:
        if len(self.values) == 1:
            return repr(self.values[0])
        return "one of " + ", ".join(repr(option) for option in self.values)

    def __repr__(self) -> str:
        return f"Options({self.values!r})"


class Predicate(Constraint):
    """Any test of a value, with the words that describe what it allows.

    A test that raises ``TypeError`` or ``ValueError`` on a value (a
    comparison with a string, say) does not allow that value.

    Parameters
    ----------
    test : callable
        Takes the value, returns whether it is allowed.
    description : str
        The allowed values in words, completing "must be ...".

    Examples
    --------
    >>> pair = Predicate(lambda v: len(v) == 2, "a pair")
    >>> pair.is_satisfied_by((1, 2)), pair.is_satisfied_by(3), str(pair)
    (True, False, 'a pair')
    """

    def __init__(self, test: Callable[[Any], bool], description: str) -> None:
        self.test = test
        self.description = description

    def is_satisfied_by(self, value: Any) -> bool:
        """Whether :attr:`test` accepts ``value``."""
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False

    def __str__(self) -> str:
        return self.description

    def __repr__(self) -> str:
        return f"Predicate({self.description!r})"


class _InstanceOf(Constraint):
    """An instance of a type; a bool only for ``bool`` (numpy bools too)."""

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def is_satisfied_by(self, value: Any) -> bool:
        if self.kind is bool:
            return isinstance(value, bool | np.bool_)
        return isinstance(value, self.kind) and not isinstance(value, bool | np.bool_)

    def __str__(self) -> str:
        name = self.kind.__name__
        return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


class _IsNone(Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


ConstraintLike = Constraint | type | None
"""What a table may list: a constraint, a type or None."""

ParameterTable = dict[str, list[ConstraintLike]]
"""The type of an ``_allowed_values`` table: parameter -> allowed values."""


def _as_constraint(constraint: ConstraintLike) -> Constraint:
    if isinstance(constraint, Constraint):
        return constraint
    if constraint is None:
        return _IsNone()
    if isinstance(constraint, type):
        return _InstanceOf(constraint)
    raise TypeError(
        f"a parameter constraint must be a Constraint, a type or None; got "
        f"{constraint!r}."
    )


def describe(constraints: Sequence[ConstraintLike]) -> str:
    """The allowed values of a list of constraints in words.

    >>> from numbers import Integral
    >>> describe([Interval(Integral, 1, None), None])
    'an int in [1, inf) or None'
    """
    words = [str(_as_constraint(constraint)) for constraint in constraints]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def check_parameter(
    name: str, value: Any, constraints: Sequence[ConstraintLike], *, owner: str
) -> None:
    """Raise unless ``value`` satisfies at least one of ``constraints``.

    Parameters
    ----------
    name : str
        The parameter, as the user spells it.
    value : object
        The value received.
    constraints : sequence of Constraint, type or None
        The allowed values.
    owner : str
        Whose parameter it is, usually the class name.

    Raises
    ------
    InvalidParameterError
        The value satisfies none of the constraints; the message names the
        parameter, the owner, the allowed values and the value.

    Examples
    --------
    >>> check_parameter("method", "mean", [Options(("auto", "blend"))],
    ...                 owner="BoosterStacker")
    Traceback (most recent call last):
    ...
    features.errors.InvalidParameterError: The 'method' parameter of BoosterStacker \
must be one of 'auto', 'blend'. Got 'mean'.
    """
    if any(_as_constraint(c).is_satisfied_by(value) for c in constraints):
        return
    shown = repr(value)
    if len(shown) > _MAX_REPR:
        shown = shown[: _MAX_REPR - 3] + "..."
    raise InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {describe(constraints)}. "
        f"Got {shown}."
    )


def check_parameters(estimator: Any) -> None:
    """Check an estimator's parameters against its class's ``_allowed_values``.

    Each parameter in the table is checked in order by :func:`check_parameter`,
    owned by the class name; then ``estimator._check_parameter_combinations()``
    runs, if the class defines it, for the rules between parameters.

    Parameters
    ----------
    estimator : object
        An instance whose class has an ``_allowed_values`` table.

    Raises
    ------
    InvalidParameterError
        The first parameter outside its allowed values, or a combination the
        class refuses.

    Examples
    --------
    >>> from numbers import Real
    >>> class Scaler:
    ...     _allowed_values = {"tol": [Interval(Real, 0, 1, closed="neither")]}
    ...     def __init__(self, tol):
    ...         self.tol = tol
    >>> check_parameters(Scaler(tol=0.5))
    >>> check_parameters(Scaler(tol=0.0))
    Traceback (most recent call last):
    ...
    features.errors.InvalidParameterError: The 'tol' parameter of Scaler must be \
a float in (0, 1). Got 0.0.
    """
    table: ParameterTable = type(estimator)._allowed_values
    owner = type(estimator).__name__
    for name, constraints in table.items():
        check_parameter(name, getattr(estimator, name), constraints, owner=owner)
    combinations = getattr(estimator, "_check_parameter_combinations", None)
    if combinations is not None:
        combinations()


def _same_option(value: Any, option: Any) -> bool:
    """``value`` is ``option``, type included (see :class:`Options`)."""
    if option is None:
        return value is None
    if isinstance(option, bool):
        return isinstance(value, bool | np.bool_) and bool(value) is option
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(option, str):
        return isinstance(value, str) and value == option
    try:
        return bool(value == option)
    except (TypeError, ValueError):  # e.g. an array compared with a number
        return False
