"""Typed command-line numbers: the one layer every numeric option of every command goes through.

Each value is an argparse ``type=`` callable that accepts only finite numbers (never ``nan`` or ``inf``), in the
option's range, and whole numbers where a count is meant (``3``, not ``3.5`` or ``1e3``); anything else is
argparse's usual one-line error with exit status 2, before any work starts. The callables keep their range
(:attr:`Number.low`, :attr:`Number.high`, :attr:`Number.integer`), so ``--help`` and the tests read it from
here (tests/test_hostile.py walks every command's options and tries each one with bad values).

Example:
    >>> parser.add_argument("--crf", type=whole(0, 51), default=23)  # doctest: +SKIP
    >>> fraction()("0.5"), whole(1)("3"), seconds()("2.5")
    (0.5, 3, 2.5)
"""

from __future__ import annotations

import argparse
import math
import re
from fractions import Fraction

#: The largest seed or count any option takes (also numpy's seed limit, 2**32 - 1).
SEED_MAX = 2**32 - 1
#: The largest step, frame or image count any option takes.
COUNT_MAX = 10**9
#: The longest duration in seconds any option takes (about 115 days).
SECONDS_MAX = 1e7

_WHOLE = re.compile(r"[+-]?\d+")


class Number:
    """An argparse ``type=``: a finite number in ``[low, high]`` (an open end with `low_open`/`high_open`), a
    whole one if `integer`.

    Args:
        integer: the value is a count (``int``); text such as ``2.5``, ``1e3`` or ``0x10`` is refused.
        low, high: the allowed range (None: unbounded on that side; every option has a finite `high`).
        low_open, high_open: exclude the bound itself (``(0, 1]``).
        unit: shown after the range in messages, e.g. ``seconds``.
    """

    def __init__(self, *, integer: bool, low: float | None, high: float | None, low_open: bool = False,
                 high_open: bool = False, unit: str = "") -> None:
        self.integer, self.low, self.high = integer, low, high
        self.low_open, self.high_open, self.unit = low_open, high_open, unit
        self.__name__ = "whole number" if integer else "number"  # argparse names the type in some messages

    def describe(self) -> str:
        """``a whole number from 1 to 51``, ``a number above 0 and at most 3600 seconds``, ..."""
        kind = "a whole number" if self.integer else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {_show(self.low)}")
        if self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {_show(self.high)}")
        return f"{kind} {' and '.join(parts)}{' ' + self.unit if self.unit else ''}".rstrip()

    def allows(self, value: float) -> bool:
        """Whether `value` (already a number) is in range, finite and, for counts, whole."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def __call__(self, text: str) -> int | float:
        raw = str(text).strip()
        try:
            if self.integer:
                if not _WHOLE.fullmatch(raw):
                    raise ValueError
                value: int | float = int(raw)
            else:
                value = float(raw)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{_clip(text)!r} is not {self.describe()}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{_clip(text)} is not a finite number: expected {self.describe()}")
        if not self.allows(value):
            raise argparse.ArgumentTypeError(f"{_clip(text)} is out of range: expected {self.describe()}")
        return value

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


def _show(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _clip(text: object) -> str:
    """The user's text, on one line and not too long, for a message."""
    one = " ".join(str(text).split())
    return one if len(one) <= 40 else one[:37] + "..."


def whole(low: int = 0, high: int = COUNT_MAX) -> Number:
    """A whole number in ``[low, high]`` (a count, a size, a seed)."""
    return Number(integer=True, low=low, high=high)


def count(high: int = COUNT_MAX) -> Number:
    """A whole number of at least 1 (``--steps``, ``--max-frames``, ``--workers``)."""
    return Number(integer=True, low=1, high=high)


def seed(low: int = 0) -> Number:
    """A seed: a whole number from `low` (``-1`` where it means unseeded) to :data:`SEED_MAX`."""
    return Number(integer=True, low=low, high=SEED_MAX)


def real(low: float | None = 0.0, high: float = 1e6, *, low_open: bool = False, high_open: bool = False,
         unit: str = "") -> Number:
    """A finite number in ``[low, high]`` (open ends as asked)."""
    return Number(integer=False, low=low, high=high, low_open=low_open, high_open=high_open, unit=unit)


def fraction() -> Number:
    """A score, an IoU or a share: a finite number from 0 to 1."""
    return real(0.0, 1.0)


def seconds(*, zero: bool = False, high: float = SECONDS_MAX) -> Number:
    """A duration in seconds: above 0 (at least 0 with `zero`), finite, at most `high`."""
    return real(0.0, high, low_open=not zero, unit="seconds")


def rate(text: str) -> str:
    """A frame rate such as ``30``, ``29.97`` or ``30000/1001``: positive and finite, at most 1000; returned as
    written (the video writer keeps an exact fraction)."""
    raw = str(text).strip()
    try:
        value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{_clip(text)!r} is not a frame rate such as 30, 29.97 or "
                                         f"30000/1001") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"{_clip(text)} is out of range: expected a frame rate above 0 and at "
                                         f"most 1000")
    return raw


def class_threshold(text: str) -> tuple[str, float]:
    """``NAME=SCORE`` with a score from 0 to 1, e.g. ``without_mask=0.3``."""
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{_clip(text)!r}: expected NAME=SCORE, e.g. without_mask=0.3")
    return name.strip(), fraction()(value)


def letterbox(text: str) -> bool | float:
    """How an export feeds frames: ``always`` (letterboxed to a square), ``never`` (squeezed), or a ratio R such
    as ``1.5`` (frames whose longer side exceeds R times the shorter letterboxed, the others squeezed)."""
    word = str(text).strip().lower()
    if word in ("always", "never"):
        return word == "always"
    try:
        return real(1.0, 100.0, high_open=True)(word)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{_clip(text)!r}: expected always, never or an aspect ratio from 1 to "
                                         f"100 such as 1.5") from None


def area_range(text: str) -> tuple[float, float]:
    """``MIN,MAX``: two shares of an image's area, 0 < MIN < MAX <= 1, e.g. ``0.01,0.25``."""
    low, sep, high = str(text).partition(",")
    if not sep:
        raise argparse.ArgumentTypeError(f"{_clip(text)!r}: expected MIN,MAX, e.g. 0.01,0.25")
    pair = fraction()(low), fraction()(high)
    if not 0 < pair[0] < pair[1]:
        raise argparse.ArgumentTypeError(f"{_clip(text)}: expected 0 < MIN < MAX <= 1, e.g. 0.01,0.25")
    return pair


__all__ = ["COUNT_MAX", "Number", "SECONDS_MAX", "SEED_MAX", "area_range", "class_threshold", "count", "fraction",
           "letterbox", "rate", "real", "seconds", "seed", "whole"]
