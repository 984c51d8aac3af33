"""Search spaces of the tuning trials: profile mappings to Optuna distributions.

A profile writes each booster's space as plain data (``{low, high, log,
type}`` ranges and ``{choices}`` lists); :func:`parse_search_space` checks
one and turns it into Optuna distributions, which the tuning studies sample
with :func:`suggest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from features.errors import InvalidParameterError

__all__ = ["parse_search_space", "suggest"]

_RANGE_KEYS = frozenset({"low", "high", "log", "type"})
_RANGE_TYPES = ("float", "int")
_CHOICE_TYPES = (type(None), bool, int, float, str)


def parse_search_space(spec: Any) -> dict[str, BaseDistribution]:
    """Optuna distributions from one booster's search-space mapping.

    Each param maps to a range or to choices:

    - ``{low, high}`` with optional ``log`` (true or false, default false)
      and ``type`` (``"float"``, the default, or ``"int"``); ``low < high``,
      and ``low > 0`` when ``log`` is true;
    - ``{choices: [...]}``: a non-empty list of null, bool, number or string.

    Parameters
    ----------
    spec : mapping of str to mapping
        Param name -> range or choices, as written in a profile.

    Returns
    -------
    dict of str to BaseDistribution
        One distribution per param, in the order of `spec`.

    Raises
    ------
    InvalidParameterError
        If `spec` or an entry is not a mapping, an entry has unknown keys, or
        a range or the choices are invalid; the message names the param.

    Examples
    --------
    >>> parse_search_space({"num_leaves": {"low": 7, "high": 63, "type": "int"}})
    {'num_leaves': IntDistribution(high=63, log=False, low=7, step=1)}
    """
    if not isinstance(spec, Mapping):
        raise InvalidParameterError(
            f"a search space must be a mapping of param name to a range or "
            f"choices. Got {spec!r}."
        )
    return {
        str(param): _parse_distribution(param, entry) for param, entry in spec.items()
    }


def _parse_distribution(param: Any, entry: Any) -> BaseDistribution:
    if not isinstance(entry, Mapping):
        raise InvalidParameterError(
            f"{param!r} must be a mapping like {{low: 0.01, high: 0.1}} or "
            f"{{choices: [...]}}. Got {entry!r}."
        )
    if "choices" in entry:
        return _parse_choices(param, entry)
    unknown = sorted(map(str, set(entry) - _RANGE_KEYS))
    if unknown or "low" not in entry or "high" not in entry:
        raise InvalidParameterError(
            f"{param!r}: a range takes 'low' and 'high' (and optional 'log', "
            f"'type'); unknown keys {unknown!r} in {dict(entry)!r}."
        )
    kind, log = entry.get("type", "float"), entry.get("log", False)
    if kind not in _RANGE_TYPES:
        raise InvalidParameterError(
            f"{param!r}: type must be one of {list(_RANGE_TYPES)}. Got {kind!r}."
        )
    if not isinstance(log, bool):
        raise InvalidParameterError(
            f"{param!r}: log must be true or false. Got {log!r}."
        )
    low, high = entry["low"], entry["high"]
    number = int if kind == "int" else int | float
    if any(isinstance(v, bool) or not isinstance(v, number) for v in (low, high)):
        raise InvalidParameterError(
            f"{param!r}: low and high must be {'ints' if kind == 'int' else 'numbers'} "
            f"(type: {kind}). Got low={low!r}, high={high!r}."
        )
    if not low < high:
        raise InvalidParameterError(
            f"{param!r}: low must be < high. Got low={low!r}, high={high!r}."
        )
    if log and low <= 0:
        raise InvalidParameterError(
            f"{param!r}: a log range needs low > 0. Got low={low!r}."
        )
    if kind == "int":
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _parse_choices(param: Any, entry: Mapping[str, Any]) -> CategoricalDistribution:
    choices = entry["choices"]
    if set(entry) != {"choices"} or not isinstance(choices, list | tuple):
        raise InvalidParameterError(
            f"{param!r}: a categorical parameter takes only 'choices', a "
            f"non-empty list. Got {dict(entry)!r}."
        )
    if not choices or any(not isinstance(c, _CHOICE_TYPES) for c in choices):
        raise InvalidParameterError(
            f"{param!r}: choices must be a non-empty list of null, bool, int, "
            f"float or str. Got {list(choices)!r}."
        )
    return CategoricalDistribution(tuple(choices))


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Sample `name` from `distribution` in an Optuna trial.

    Parameters
    ----------
    trial : optuna.Trial
        The running trial.
    name : str
        Param name, as in the search space.
    distribution : BaseDistribution
        One of the distributions :func:`parse_search_space` returns.

    Returns
    -------
    Any
        The sampled value (int, float or one of the choices).
    """
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, log=distribution.log
        )
    return trial.suggest_float(
        name, distribution.low, distribution.high, log=distribution.log
    )
