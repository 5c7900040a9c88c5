"""Answer extraction shared by the benchmarks: boxed values, final answers, integers, letters, code, grids.

Every function takes a model reply and returns the parsed answer, or None when nothing fits.
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL = re.compile(r"answer[*_]*\s*(?:is|:|=)[*_:\s]*(.+)", re.IGNORECASE)
_INT = re.compile(r"(?<![\w.])-?\d+(?![\d.]*\d)")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    found = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[m.end() : i - 1].strip()
    return found


def strip_latex(s: str) -> str:
    """Drop math delimiters, \\text{}, bold markers and trailing punctuation around a short answer."""
    s = re.sub(r"\\text(?:bf|rm)?\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = s.replace("\\[", "").replace("\\]", "").replace("**", "").strip()
    return s.rstrip(".").strip()


def final_answer(text: str) -> str | None:
    """The stated final answer: last \\boxed{}, else the text after the last 'answer is/:', else None."""
    boxed = last_boxed(text)
    if boxed is not None:
        return strip_latex(boxed)
    matches = list(_FINAL.finditer(text))
    if matches:
        return strip_latex(matches[-1].group(1)) or None
    return None


def parse_int(s: str | None) -> int | None:
    """The integer in a short answer string ('070', '70.0', 'x = 70'); the last one if several."""
    if s is None:
        return None
    s = strip_latex(s).replace(",", "").replace("\\,", "").replace("\\!", "")
    m = re.fullmatch(r"\s*(-?\d+)(?:\.0*)?\s*", s)
    if m:
        return int(m.group(1))
    ints = _INT.findall(s)
    return int(ints[-1]) if ints else None


def extract_int(text: str) -> int | None:
    """Integer answer: last \\boxed{}, else 'answer is/:' phrase, else the last integer in the reply."""
    for candidate in (last_boxed(text), _final_phrase(text)):
        value = parse_int(candidate)
        if value is not None:
            return value
    ints = _INT.findall(text.replace(",", ""))
    return int(ints[-1]) if ints else None


def _final_phrase(text: str) -> str | None:
    matches = list(_FINAL.finditer(text))
    return matches[-1].group(1) if matches else None


def extract_number(text: str) -> float | None:
    """Numeric answer: the number in the stated final answer, else the last number in the reply."""
    for source in (final_answer(text) or "", text):
        nums = _NUMBER.findall(source)
        if nums:
            try:
                return float(nums[-1].replace(",", ""))
            except ValueError:
                continue
    return None


def extract_letter(text: str, letters: str = "ABCD") -> str | None:
    """Multiple-choice letter: \\boxed{C}, 'Answer: C', '(C)' or '**C**', else the last standalone letter."""
    L = f"[{re.escape(letters)}]"
    boxed = last_boxed(text)
    if boxed is not None:
        m = re.fullmatch(rf"\(?({L})\)?", strip_latex(boxed))
        if m:
            return m.group(1)
    patterns = (
        rf"answer\s*(?:is|:)?\s*[:\-]?\s*(?:option\s*)?[*_]*\s*[(\[]?({L})(?![A-Za-z])",
        rf"\(({L})\)|\*\*({L})\*\*|\*\*\(?({L})[).:]",
        rf"(?<![A-Za-z'])({L})(?![A-Za-z'])(?!(?<=A)\s+(?!is\b|was\b)[a-z])",  # not the article "A word"
    )
    for pat in patterns:
        hits = list(re.finditer(pat, text, flags=re.IGNORECASE if pat is patterns[0] else 0))
        hits = [h for h in hits if any(g and g in letters for g in h.groups())]
        if hits:
            return next(g for g in hits[-1].groups() if g)
    return None


_FENCE = re.compile(r"```[ \t]*([\w+#-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(?:def |class |import |from \S+ import |@)")


def extract_code(text: str, entry_point: str | None = None) -> str | None:
    """Python code from a reply: the last fenced block defining `entry_point`, else the longest Python
    block (an unclosed fence, as when the reply is cut off, runs to the end), else bare code."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    blocks = [b.strip("\n") for b in blocks if b.strip()]
    if blocks:
        if entry_point:
            defining = [b for b in blocks if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", b)]
            if defining:
                return defining[-1]
        return max(blocks, key=len)
    lines = text.strip("\n").splitlines()
    start = next((i for i, ln in enumerate(lines) if _CODE_START.match(ln)), None)
    if start is None:
        return None
    lines = lines[start:]
    while lines:  # drop trailing prose until the rest compiles
        code = "\n".join(lines)
        try:
            compile(code, "<reply>", "exec")
            return code
        except SyntaxError:
            lines.pop()
    return None


_SEPARATOR = re.compile(r"^[\s\-+|=_:]*[-=][\s\-+|=_:]*$")
_ROW_LABEL = re.compile(r"^\s*(?:row\s*\d+\s*[:.)\-]\s*)", re.IGNORECASE)
_JSON_GRID = re.compile(r"\[\s*\[[\d\s,\[\]]*?\]\s*\]")


def extract_grids(text: str, cell: str = r"\d") -> list[tuple[int, list[list[str]]]]:
    """All rectangular grids in a reply as (end position, rows of cell strings), in order of position.

    A grid is a run of lines that hold only cells (digits by default) separated by spaces, commas or
    bars, optionally in brackets (`[0, 1, 2],`) or after a 'Row 3:' label; box separator lines
    (`------+------`) are skipped; code fences end a run. JSON lists `[[0,1],[2,3]]` on one line count too.
    """
    row_re = re.compile(rf"^(?:{cell})(?:[\s,|]*(?:{cell}))*$")
    grids: list[tuple[int, list[list[str]]]] = []
    run: list[list[str]] = []
    pos = 0
    run_end = 0

    def flush() -> None:
        if run and len({len(r) for r in run}) == 1:
            grids.append((run_end, [list(r) for r in run]))
        run.clear()

    for line in text.splitlines(keepends=True):
        pos += len(line)
        body = _ROW_LABEL.sub("", line).strip().strip("[],|").strip()
        if body and row_re.match(body):
            run.append(re.findall(cell, body))
            run_end = pos
        elif run and _SEPARATOR.match(line) and "`" not in line:
            continue
        else:
            flush()
    flush()
    for m in _JSON_GRID.finditer(text):
        if "\n" in m.group(0):
            continue  # multi-line lists are already seen row by row
        rows = [re.findall(cell, r) for r in re.findall(r"\[([^\[\]]*)\]", m.group(0))]
        if rows and all(rows) and len({len(r) for r in rows}) == 1:
            grids.append((m.end(), rows))
    return sorted(grids, key=lambda g: g[0])


def last_grid(text: str, cell: str = r"\d", shape: tuple[int, int] | None = None) -> list[list[str]] | None:
    """The last grid in the reply (of the given shape, if one is given), or None."""
    grids = [g for _, g in extract_grids(text, cell)]
    if shape is not None:
        grids = [g for g in grids if (len(g), len(g[0])) == shape]
    return grids[-1] if grids else None
