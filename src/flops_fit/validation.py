"""One message shape for every argument check: ``<name>: expected <what>, found <value>``.

Like scikit-learn's ``check_scalar``: the public functions validate at the door
with these helpers, so a user sees the same sentence whichever front end (the
library or an ``ff-*`` command) met the bad value.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


def _found(value: Any) -> str:
    return f"{value!r}" if isinstance(value, (int, float, str, bool, type(None))) else \
        f"{type(value).__name__} {value!r}"[:200]


def check_int(value: Any, name: str, *, min: int | None = None, max: int | None = None,
              allow_none: bool = False, what: str = "", expected: str = "") -> int | None:
    """An int (never a bool) in [min, max]; None passes when `allow_none`; `expected` replaces the wording."""
    if value is None and allow_none:
        return None
    bounds = "" if min is None and max is None else (
        f" >= {min}" if max is None else f" <= {max}" if min is None else f" in [{min}, {max}]")
    label = ("a positive integer" if min == 1 and max is None else "a non-negative integer" if min == 0 and max is None
             else f"an integer{bounds}")
    label += f" ({what})" if what else ""
    label = expected or label
    if isinstance(value, bool) or not isinstance(value, int) or (min is not None and value < min) \
            or (max is not None and value > max):
        raise ValueError(f"{name}: expected {label}{' or None' if allow_none else ''}, found {_found(value)}")
    return value


def check_number(value: Any, name: str, *, min: float | None = None, max: float | None = None,
                 min_inclusive: bool = True, max_inclusive: bool = True, allow_none: bool = False,
                 what: str = "", expected: str = "") -> float | None:
    """A finite real number (never a bool) within the bounds; None passes when `allow_none`; `expected`
    replaces the wording."""
    if value is None and allow_none:
        return None
    lo = "" if min is None else ("[" if min_inclusive else "(") + f"{min:g}"
    hi = "" if max is None else f"{max:g}" + ("]" if max_inclusive else ")")
    label = "a finite number" + (f" in {lo or '(-inf'}, {hi or 'inf)'}" if lo or hi else "")
    label += f" ({what})" if what else ""
    label = expected or label
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and min is not None:
        ok = value >= min if min_inclusive else value > min
    if ok and max is not None:
        ok = value <= max if max_inclusive else value < max
    if not ok:
        raise ValueError(f"{name}: expected {label}{' or None' if allow_none else ''}, found {_found(value)}")
    return float(value)


def check_flops(value: Any, name: str) -> float:
    """A compute budget: a positive finite number of FLOPs (numpy and string numbers accepted)."""
    try:
        c = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number of FLOPs, found {value!r}") from None
    if not math.isfinite(c) or c <= 0:
        raise ValueError(f"{name}: expected a positive finite number of FLOPs, found {value!r}")
    return c


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """One of `choices`."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(repr(c) for c in options)}, found {_found(value)}")
    return value


def check_callable(value: Any, name: str, what: str) -> Any:
    if not callable(value):
        raise TypeError(f"{name}: expected {what}, found {type(value).__name__}")
    return value
