"""Answer extraction shared by the benchmarks: boxed values, final answers, integers, letters, code, grids.

Every function takes a model reply and returns the parsed answer, or None when nothing fits. Extraction is
strict: only an explicit final answer counts (a `\\boxed{}`, an "answer is"/"Answer:" statement, a letter
after "Answer:", a well-formed grid), never a stray number or letter from the running text, so a reply cut
off at the token cap scores on an explicit answer only.
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL = re.compile(r"(?:final\s+)?answer[*_]*\s*(?:is|:|=)[*_:\s]*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


def _boxes(text: str) -> list[tuple[int, str]]:
    """(end position, content) of every \\boxed{...} with balanced braces."""
    found = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append((i, text[m.end() : i - 1].strip()))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    boxes = _boxes(text)
    return boxes[-1][1] if boxes else None


def strip_latex(s: str) -> str:
    """Drop math delimiters, \\text{}, bold markers and trailing punctuation around a short answer."""
    s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = s.replace("\\[", "").replace("\\]", "").replace("**", "").strip()
    return s.rstrip(".").strip()


def _statement(m: re.Match) -> str:
    """The answer part of an 'answer is ...' line: up to a sentence end followed by more prose."""
    text = m.group(1).strip()
    while (inner := list(_FINAL.finditer(text))):  # 'Final Answer: The final answer is $70$.'
        text = inner[-1].group(1).strip()
    text = re.split(r"(?<=[^\s\\])\.(?:\s+[A-Z(]|\s*$)|\s+(?:because|since|as|which|so|and\s+so)\b", text)[0]
    return text.strip()


def final_answer(text: str) -> str | None:
    """The stated final answer: whichever comes last of the last \\boxed{} and the last 'answer is/:'
    statement (a statement holding a box counts as the box), else None."""
    boxes = _boxes(text)
    phrases = list(_FINAL.finditer(text))
    box_end = boxes[-1][0] if boxes else -1
    if phrases and phrases[-1].start() >= box_end and "\\boxed" not in phrases[-1].group(1):
        return strip_latex(_statement(phrases[-1])) or None
    if boxes:
        return strip_latex(boxes[-1][1])
    return None


def parse_int(s: str | None) -> int | None:
    """The integer a short answer string is ('070', '70.0', '1,000'), else None (no digging in prose)."""
    if s is None:
        return None
    s = strip_latex(s).replace("{,}", "").replace("\\,", "").replace("\\!", "").strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+", s):
        s = s.replace(",", "")
    m = re.fullmatch(r"\s*(-?\d+)(?:\.0*)?\s*", s)
    return int(m.group(1)) if m else None


def extract_int(text: str) -> int | None:
    """Integer answer: the stated final answer (last \\boxed{} or 'answer is'), when it is an integer."""
    return parse_int(final_answer(text))


def extract_number(text: str) -> float | None:
    """Numeric answer: the number in the stated final answer, else a last line that is only a number."""
    stated = final_answer(text)
    if stated is None:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        last = strip_latex(lines[-1]) if lines else ""
        stated = last if re.fullmatch(r"[^\d]{0,3}" + _NUMBER.pattern.join("()") + r"\s*[^\d\s]{0,12}", last) else None
    if stated is None:
        return None
    nums = _NUMBER.findall(stated.replace("{,}", ","))
    if len(nums) != 1:
        return None
    try:
        return float(nums[0].replace(",", ""))
    except ValueError:
        return None


_LETTER_STATEMENT = re.compile(r"answer[ \t]*[*_]*[ \t]*:[ \t]*[*_]*[ \t]*\$?[ \t]*(?:\\text\{)?\(?([A-Za-z])\)?", re.I)


def extract_letter(text: str, letters: str = "ABCD") -> str | None:
    """Multiple-choice letter, following simple-evals: an 'Answer: X' statement (case-insensitive, markdown
    bold and brackets allowed) or \\boxed{X}; the last one in the reply counts. No fallback to letters in
    running text: a reply without an explicit answer has none."""
    found: list[tuple[int, str]] = []
    for m in _LETTER_STATEMENT.finditer(text):
        letter, after = m.group(1), text[m.end() : m.end() + 12]
        if letter.upper() not in letters:
            continue
        if re.match(r"[A-Za-z0-9]", after):
            continue  # 'Answer: Although ...'
        if letter.islower() and not re.match(r"\s*(?:$|[.)\]*_,;}\n])", after):
            continue  # 'answer: a bit more' is prose; 'answer: c' at the end is an answer
        found.append((m.start(), letter.upper()))
    for end, box in _boxes(text):
        m = re.fullmatch(rf"\(?([{re.escape(letters)}])\)?", strip_latex(box), flags=re.I)
        if m:
            found.append((end, m.group(1).upper()))
    return max(found)[1] if found else None


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


_SEPARATOR = re.compile(r"^[\s\-+|=_:]*[-=_*][\s\-+|=_:*]*$")
_ROW_LABEL = re.compile(r"^\s*(?:row\s*\d+\s*[:.)\-]\s*)", re.IGNORECASE)
_JSON_GRID = re.compile(r"\[\s*\[[\d\s,\[\]]*?\]\s*\]")
_LEAD_IN = re.compile(r"(?:output|grid|answer|result|solution)[^\n]*:\s*(?:```\w*)?\s*$", re.IGNORECASE)


def _blocks(text: str, cell: str) -> list[dict]:
    """Runs of grid rows: {'end', 'rows', 'after_rule', 'single'} in order of position.

    A row is a line holding only cells (digits by default) separated by spaces, commas or bars, optionally
    in brackets (`[0, 1, 2],`) or after a 'Row 3:' label. A box separator inside a grid (`------+------`,
    `---|---`) is skipped; a markdown rule (`---`, `***`, `===`) or any other line ends the run (a run right
    after a rule is marked, so a grid drawn with plain dashed lines between its bands can be joined when its
    expected shape is known). `single` marks a one-row run of one token ('3', '12'): a stray number, not a
    grid, unless a lead-in such as 'Output:' introduces it.
    """
    row_re = re.compile(rf"^(?:{cell})(?:[\s,|]*(?:{cell}))*$")
    blocks: list[dict] = []
    run: list[list[str]] = []
    cur = {"end": 0, "after_rule": False, "lead_in": False, "token": True}
    pos, prev_line, rule_pending = 0, "", False

    def flush() -> None:
        if run and len({len(r) for r in run}) == 1:
            blocks.append({"end": cur["end"], "rows": [list(r) for r in run], "after_rule": cur["after_rule"],
                           "single": len(run) == 1 and cur["token"] and not cur["lead_in"]})
        run.clear()

    for line in text.splitlines(keepends=True):
        pos += len(line)
        body = _ROW_LABEL.sub("", line).strip().strip("[],|").strip()
        if body and row_re.match(body):
            if not run:
                cur.update(after_rule=rule_pending, lead_in=bool(_LEAD_IN.search(prev_line)), token=True)
            run.append(re.findall(cell, body))
            cur["end"] = pos
            cur["token"] = cur["token"] and not re.search(r"[\s,|]", body)
            rule_pending = False
        elif line.strip() and _SEPARATOR.match(line) and "`" not in line:
            if not (run and re.search(r"[+|]", line)):  # '------+------' inside a grid is skipped
                had_run = bool(run)
                flush()
                rule_pending = had_run
        else:
            flush()
            rule_pending = False
        if line.strip():
            prev_line = line
    flush()
    return blocks


def extract_grids(text: str, cell: str = r"\d") -> list[tuple[int, list[list[str]]]]:
    """All well-formed grids in a reply as (end position, rows of cell strings), in order of position:
    runs of rows (see _blocks; stray one-token lines are left out unless nothing else is there) and JSON
    lists `[[0,1],[2,3]]` written on one line."""
    blocks = _blocks(text, cell)
    grids = [(b["end"], b["rows"]) for b in blocks if not b["single"]]
    for m in _JSON_GRID.finditer(text):
        if "\n" in m.group(0):
            continue  # multi-line lists are already seen row by row
        rows = [re.findall(cell, r) for r in re.findall(r"\[([^\[\]]*)\]", m.group(0))]
        if rows and all(rows) and len({len(r) for r in rows}) == 1:
            grids.append((m.end(), rows))
    if not grids:
        grids = [(b["end"], b["rows"]) for b in blocks]
    return sorted(grids, key=lambda g: g[0])


def last_grid(text: str, cell: str = r"\d", shape: tuple[int, int] | None = None) -> list[list[str]] | None:
    """The last well-formed grid in the reply (of the given shape, if one is given), or None. With a shape,
    runs split only by plain dashed rules are also tried joined (a Sudoku drawn with `------` between bands)."""
    grids = extract_grids(text, cell)
    if shape is not None:
        grids = [g for g in grids if (len(g[1]), len(g[1][0])) == shape]
        blocks = _blocks(text, cell)
        for i in range(len(blocks)):
            rows, j = list(blocks[i]["rows"]), i
            while j + 1 < len(blocks) and blocks[j + 1]["after_rule"] and len(rows) < shape[0]:
                j += 1
                rows += blocks[j]["rows"]
            if j > i and (len(rows), len(rows[0])) == shape and len({len(r) for r in rows}) == 1:
                grids.append((blocks[j]["end"], rows))
        grids.sort(key=lambda g: g[0])
    return grids[-1][1] if grids else None
