"""Mathematical equivalence of final answers written in LaTeX (fractions, roots, powers, pi).

A small LaTeX-to-sympy converter (sympy's own LaTeX parser needs antlr): only a whitelisted
arithmetic string is ever handed to sympy, and huge powers are refused. Anything it cannot parse
falls back to a normalized string comparison.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from harness import answers

# ---- LaTeX to sympy, without eval of anything but a whitelisted arithmetic string -----------------------

_COMMANDS = {
    "\\cdot": "*",
    "\\times": "*",
    "\\div": "/",
    "\\pi": "pi",
    "\\infty": "oo",
    "\\%": "/100",
    "\\left": "",
    "\\right": "",
    "\\,": "",
    "\\!": "",
    "\\;": "",
    "\\:": "",
    "\\ ": "",
    "^\\circ": "",
    "^{\\circ}": "",
    "\\circ": "",
    "\\displaystyle": "",
}


@cache
def _sympy() -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """sympy, the names an answer may use, and the only globals its parser sees (imported lazily: ~0.5 s)."""
    import sympy

    names = {"sqrt": sympy.sqrt, "pi": sympy.pi, "oo": sympy.oo, "e": sympy.E}
    glob = {"__builtins__": {}} | {
        k: getattr(sympy, k) for k in ("Integer", "Float", "Rational", "Symbol", "Add", "Mul", "Pow")
    }
    return sympy, names, glob


def _group(s: str, i: int) -> tuple[str, int]:
    """The balanced {...} group starting at s[i] (or the single character there), and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] != "{":
        return s[i], i + 1
    depth, j = 0, i
    while j < len(s):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return s[i + 1 : j], j + 1
        j += 1
    raise ValueError("unbalanced braces")


def latex_to_text(s: str) -> str:
    """Rewrite \\frac, \\dfrac, \\sqrt[n]{}, ^{}, \\cdot, \\pi, ... into a plain arithmetic string."""
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    for k, v in _COMMANDS.items():
        s = s.replace(k, v)
    out, i = [], 0
    while i < len(s):
        if s.startswith("\\frac", i):
            a, i = _group(s, i + 5)
            b, i = _group(s, i)
            out.append(f"(({latex_to_text(a)})/({latex_to_text(b)}))")
        elif s.startswith("\\sqrt", i):
            i += 5
            root = None
            if i < len(s) and s[i] == "[":
                end = s.index("]", i)
                root, i = s[i + 1 : end], end + 1
            a, i = _group(s, i)
            a = latex_to_text(a)
            out.append(f"sqrt({a})" if root is None else f"(({a})**(1/({latex_to_text(root)})))")
        elif s[i] == "^":
            a, i = _group(s, i + 1)
            out.append(f"**({latex_to_text(a)})")
        elif s[i] == "\\":
            raise ValueError(f"unsupported LaTeX command at {s[i : i + 12]!r}")
        else:
            out.append({"{": "(", "}": ")"}.get(s[i], s[i]))
            i += 1
    return "".join(out)


def to_sympy(s: str) -> Any:
    """A sympy expression for a short LaTeX or plain answer, or None when it is not plain arithmetic."""
    try:
        text = latex_to_text(answers.strip_latex(s)).strip()
    except ValueError:
        return None
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    if not text or len(text) > 200 or not re.fullmatch(r"[\w.+\-*/() ]*", text):
        return None
    sympy, known, glob = _sympy()
    from sympy.parsing.sympy_parser import implicit_multiplication, parse_expr, standard_transformations

    names = set(re.findall(r"[A-Za-z_]\w*", text))
    if any(n not in known and not re.fullmatch(r"[A-Za-z]", n) for n in names) or re.search(r"\d{60}", text):
        return None
    local = {n: known.get(n, sympy.Symbol(n)) for n in names}
    transforms = (*standard_transformations, implicit_multiplication)
    try:
        raw = parse_expr(
            text,
            local_dict=dict(local),
            global_dict=dict(glob),
            transformations=transforms,
            evaluate=False,
        )
        for node in sympy.preorder_traversal(raw):  # refuse huge powers before evaluating them
            if node.is_Pow and not node.exp.free_symbols and abs(float(node.exp.evalf())) > 1000:
                return None
        return parse_expr(text, local_dict=dict(local), global_dict=dict(glob), transformations=transforms)
    except Exception:  # noqa: BLE001 - anything unparseable falls back to string comparison
        return None


def _rhs(s: str) -> str:
    return s.rsplit("=", 1)[-1].strip() if "=" in s and "==" not in s else s.strip()


def normalize(s: Any) -> str:
    """Case, spacing, quotes, a trailing period and LaTeX wrappers do not matter."""
    s = answers.strip_latex(str(s)).strip().strip("\"'`").strip().lower()
    return re.sub(r"\s+", " ", s).rstrip(".").strip()


def math_equal(got: str, want: str, rel_tol: float = 1e-9) -> bool:
    """Equivalence of two answers: same normalized text, or sympy says equal (element-wise for lists)."""
    got, want = _rhs(got), _rhs(want)
    if normalize(got).replace(" ", "") == normalize(want).replace(" ", ""):
        return True
    g_parts, w_parts = re.split(r",\s+|;", got), re.split(r",\s+|;", want)
    if len(g_parts) > 1 or len(w_parts) > 1:
        return len(g_parts) == len(w_parts) and all(
            math_equal(g, w, rel_tol) for g, w in zip(g_parts, w_parts, strict=True)
        )
    a, b = to_sympy(got), to_sympy(want)
    if a is None or b is None:
        return False
    sympy = _sympy()[0]
    try:
        if sympy.simplify(a - b) == 0:
            return True
        if not a.free_symbols and not b.free_symbols:
            x, y = complex(sympy.N(a)), complex(sympy.N(b))
            return abs(x - y) <= rel_tol * max(1.0, abs(y))
    except Exception:  # noqa: BLE001
        return False
    return False
