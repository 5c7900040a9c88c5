"""The one place that decides whether a reply's final answer equals the gold answer (math and AIME).

A thin adapter over Hugging Face's `math-verify` (the checker open-r1 and lighteval use): both strings are
parsed with its LaTeX and plain-expression extractors and compared with its `verify` (fractions, roots,
pi, powers, `\\left`/`\\right`, `\\dfrac`, units in `\\text{}`, percent, thousands separators, unordered
lists as sets, tuples, intervals, equations). On top of it, the harness's own rules:

- leading zeros are digits, not products: "070" is 70 (a bare integer is read by int(), never by sympy);
- an equation in the reply counts for a non-equation gold only when its left side is a single variable
  (`x = 6` may answer 6; `x + 1 = 6` may not, and `a = 7, b = 3` never equals `a = 2, b = 3`);
- AIME (`aime_answer`, `aime_equal`): the answer must be an integer from 0 to 999 (leading zeros allowed,
  `\\frac{140}{2}` is 70); anything else is no answer at all.

math-verify's own timeouts use SIGALRM, which only works on the main thread (scoring runs in worker
threads), so they are off; instead an answer longer than MAX_CHARS, or holding an exponent with more than
three digits, a tower of powers or a factorial of a 3-digit number, is refused before sympy sees it.

Extraction (which part of a reply is the final answer) is not done here: see harness.answers.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from harness import answers

MAX_CHARS = 400
_HUGE_POWER = re.compile(r"(\^|\*\*)\s*\{?\s*\(?\s*-?\d{4,}|\d{200}|\^\s*\{[^{}]*\^|\^\s*\d\s*\^|\d{3,}\s*!")
_INT = re.compile(r"[+-]?\d+")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+")


def _mv() -> Any:
    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout is disabled" warnings
    return math_verify


def _clean(s: str) -> str:
    s = answers.strip_latex(str(s)).strip()
    s = re.sub(r"\\(?:displaystyle|,|!|;|:)\s*", lambda m: "," if m.group(0).startswith("\\,") else "", s)
    return s.strip().rstrip(".").strip()


def plain_int(s: str) -> int | None:
    """The integer a bare integer string denotes ('070' -> 70, '1,000' -> 1000), else None."""
    s = re.sub(r"^([+-])\s+", r"\1", _clean(s).strip())
    if _THOUSANDS.fullmatch(s):
        s = re.sub(r"\{,\}|,|\\,", "", s)
    return int(s) if _INT.fullmatch(s) else None


@lru_cache(maxsize=4096)
def parse(s: str) -> tuple[Any, ...]:
    """math-verify's parse of one short answer (a tuple of candidate expressions/strings; empty when
    nothing parses or the answer is refused as too large)."""
    s = _clean(s)
    if not s or len(s) > MAX_CHARS or _HUGE_POWER.search(s):
        return ()
    n = plain_int(s)
    if n is not None:
        s = str(n)
    mv = _mv()
    try:
        got = mv.parse(f"${s}$", [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()], parsing_timeout=None)
    except Exception:  # noqa: BLE001 - an unparseable answer is simply not equal to anything
        return ()
    return tuple(got)


def _equations(expr: Any) -> list[Any]:
    import sympy

    if isinstance(expr, sympy.Eq):
        return [expr]
    if isinstance(expr, sympy.FiniteSet | sympy.Tuple | tuple | list | set):
        return [e for item in expr for e in _equations(item)]
    return []


def _has_equation(parsed: tuple[Any, ...]) -> bool:
    return any(_equations(p) for p in parsed if not isinstance(p, str))


def _equation_ok(reply: tuple[Any, ...], gold: tuple[Any, ...]) -> bool:
    """The harness rule: a reply equation may stand for a non-equation gold only as `variable = value`."""
    if _has_equation(gold):
        return True
    import sympy

    for p in reply:
        if isinstance(p, str):
            continue
        for eq in _equations(p):
            if not isinstance(eq.lhs, sympy.Symbol):
                return False
    return True


def math_equal(got: str, want: str) -> bool:
    """Is the reply's final answer `got` equal to the gold `want`? (see the module docstring)"""
    if got is None or want is None:
        return False
    g_int, w_int = plain_int(str(got)), plain_int(str(want))
    if g_int is not None and w_int is not None:
        return g_int == w_int
    gold, reply = parse(str(want)), parse(str(got))
    if not gold or not reply:
        return _normal(got) == _normal(want) != ""
    if not _equation_ok(reply, gold):
        return False
    try:
        return bool(_mv().verify(list(gold), list(reply), timeout_seconds=None))
    except Exception:  # noqa: BLE001
        return False


def _normal(s: Any) -> str:
    return re.sub(r"\s+", "", _clean(str(s)).strip("\"'`").lower())


def normalize(s: Any) -> str:
    """Case, spacing, quotes, a trailing period and LaTeX wrappers do not matter (the `exact` scorer)."""
    s = answers.strip_latex(str(s)).strip().strip("\"'`").strip().lower()
    return re.sub(r"\s+", " ", s).rstrip(".").strip()


def _squash(s: str) -> str:
    return re.sub(r"[\s$]|\\[,;!]|\\left|\\right", "", s).rstrip(".")


def aime_answer(s: str | None, question: str | None = None) -> int | None:
    """The AIME answer an extracted string denotes: an integer 0-999 (leading zeros allowed, any expression
    that evaluates to such an integer exactly, e.g. \\frac{140}{2}, never 468.0000000001), else None. A
    string naming several different candidates ('469 or 468') is no answer. `m+n=468` is 468 when the question asks
    for m+n (and `x = 70` always is 70)."""
    if s is None:
        return None
    parts = answers.alternatives(s)
    if len(parts) > 1:  # '468 or 468' is 468; '469 or 468' is no answer
        values = {aime_answer(p, question) for p in parts}
        return values.pop() if len(values) == 1 else None
    clean = _clean(s)
    if question and clean.count("=") == 1:
        lhs, rhs = clean.split("=")
        if _squash(lhs) and _squash(lhs) in _squash(question):
            return aime_answer(rhs)
    if re.fullmatch(r"-?\d+\.\d+", clean):
        d = Decimal(clean)
        return int(d) if d == d.to_integral_value() and 0 <= d <= 999 else None
    n = plain_int(s)
    if n is None:
        import sympy

        for p in parse(s):
            if isinstance(p, sympy.Eq) and isinstance(p.lhs, sympy.Symbol):
                p = p.rhs  # 'x = 70'
            if isinstance(p, sympy.Basic) and not _equations(p) and getattr(p, "is_number", False):
                try:
                    v = p if isinstance(p, sympy.Float) else sympy.simplify(p)
                    v = sympy.Integer(int(v)) if isinstance(v, sympy.Float) and v == int(v) else v
                except Exception:  # noqa: BLE001
                    continue
                if isinstance(v, sympy.Integer):
                    n = int(v)
                    break
    return n if n is not None and 0 <= n <= 999 else None


def aime_equal(got: str | None, gold: int, question: str | None = None) -> bool:
    n = aime_answer(got, question)
    return n is not None and n == int(gold)
