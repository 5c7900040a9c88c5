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


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end position, content) of every \\boxed{...} with balanced braces."""
    found = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append((m.start(), i, text[m.end() : i - 1].strip()))
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


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


# A heading such as '**Final Answer**' or '## Final Answer' with the answer on the next non-empty line.
_HEADING = re.compile(r"^[ \t]*(?:#+[ \t]*|[*_]{2})?[ \t]*final[ \t]+answer[ \t]*:?[ \t]*(?:[*_]{2})?[ \t]*:?[ \t]*\n"
                      r"\s*(\S[^\n]*)", re.IGNORECASE | re.MULTILINE)
# A revision after the stated answer ('..., wait, actually it's 469') commits to a new value.
_REVISION = re.compile(r"\b(?:wait|actually|correction|oops|on second thought|i made an? (?:mistake|error))\b"
                       r"[^\n]{0,60}?\b(?:it'?s|it is|the answer is|(?:it|the answer) (?:should|must) be)"
                       r"[ \t]+\$?[ \t]*(-?\d[\d,]*(?:\.\d+)?)(?![\d.]*\d)", re.IGNORECASE)
# Whatever follows a box and belongs to its expression: \boxed{468}^{2} is 468 squared, not 468.
_BOX_TAIL = re.compile(r"[ \t]*(?:\^[ \t]*(?:\{[^{}]*\}|\d+)|_[ \t]*(?:\{[^{}]*\}|\w)|!(?!=))")
_BOX_JOIN = re.compile(r"[\s$,;.]*(?:\\(?:quad|qquad|text\{[^{}]*\}|lor|vee|,)|\bor\b|\band\b|/|\|)?[\s$,;.]*")


def final_answer(text: str) -> str | None:
    """The stated final answer, the last committed one: the last \\boxed{} (with boxes right next to it
    joined by ' or ', and an exponent after it kept), an 'answer is/:' statement, a 'Final Answer' heading
    with the answer below it, or a later revision ('wait, actually it's 469'); whichever comes last. None
    when the reply states none."""
    found: list[tuple[int, str]] = []
    boxes = _boxes(text)
    if boxes:
        group = [boxes[-1]]
        for b in reversed(boxes[:-1]):  # \boxed{469}\boxed{468}: one answer naming two values
            if _BOX_JOIN.fullmatch(text[b[1] : group[0][0]]):
                group.insert(0, b)
            else:
                break
        content = " or ".join(strip_latex(b[2]) for b in group)
        tail = _BOX_TAIL.match(text, boxes[-1][1])
        if tail and len(group) == 1:
            content = f"({content}){tail.group(0).strip()}"
        found.append((boxes[-1][1], content))
    phrases = [m for m in _FINAL.finditer(text) if "\\boxed" not in m.group(1)]
    if phrases:
        found.append((phrases[-1].start(), strip_latex(_statement(phrases[-1]))))
    heads = list(_HEADING.finditer(text))
    if heads and "\\boxed" not in heads[-1].group(1):
        found.append((heads[-1].start(1), strip_latex(_statement(heads[-1]))))
    if found:
        revisions = [m for m in _REVISION.finditer(text) if m.start() > max(pos for pos, _ in found)]
        if revisions:
            found.append((revisions[-1].start(), revisions[-1].group(1)))
    found = [(pos, a) for pos, a in found if a]
    return max(found, key=lambda f: f[0])[1] if found else None


_ALTERNATIVES = re.compile(r"\s*\b(?:or|and|vs|versus)\b\.?\s*|\\lor|\\vee|\s\|\s|;|,\s+|,(?!\d{3}\b)|\bpossibly\b"
                           r"|\bmaybe\b|\bperhaps\b|\beither\b", re.IGNORECASE)


def alternatives(stated: str) -> list[str]:
    """The candidates a stated answer names ('469 (or possibly 468)' names two); one for a plain answer."""
    parts = [p.strip(" .:*()") for p in _ALTERNATIVES.split(stated)]
    parts = [p for p in parts if p and re.search(r"\d", p)]
    return parts if len(parts) > 1 else [stated]


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


# ---- multiple-choice letters ------------------------------------------------------------------------------

HEDGED = "hedged"  # find_letter's reason when the final answer names more than one option
_LETTER_CUE = re.compile(r"\banswer\b[ \t]*[*_]*[ \t]*(?::|\bis\b)[ \t]*[*_]*[ \t]*(?:\n[ \t]*\n?)?", re.IGNORECASE)
_OPEN = re.compile(r"^(?:\s|[*_$(\[{]|\\\(|\\\[|\\(?:text|textbf|mathrm|mathbf|boxed)\s*\{|\b(?:option|choice)\b)+",
                   re.IGNORECASE)
_CLOSE = re.compile(r"^(?:[*_$)\]}]|\\\)|\\\])+")
_MORE = re.compile(r"^(?:\s*(?:,|/|\||&|\bor\b|\band\b|\bvs\b\.?)|[ \t]+)\s*(?:\b(?:option|choice)\b)?[\s*_$(\[{\\]*"
                   r"(?:(?:text|textbf|mathrm|boxed)\s*\{)?\s*([A-Za-z])(?![A-Za-z0-9])", re.IGNORECASE)
_LETTER_REVISION = re.compile(r"\b(?:wait|actually|correction|on second thought)\b[^\n]{0,40}?\b(?:it'?s|it is|"
                              r"the answer is|should be|must be)[ \t]+(?:option[ \t]+)?\(?([A-Z])\)?(?![A-Za-z0-9])")


def _letter_payload(text: str, letters: str) -> tuple[str | None, bool]:
    """(letter, hedged) for the text after an answer cue or inside a box: '(B)', '\\textbf{B}', 'Option B',
    'B) 42 nm'; 'A or B', 'A/B', 'A, B, C or D' are hedged; 'A lot of ...' is prose, not a letter."""
    rest = text[_OPEN.match(text).end() if _OPEN.match(text) else 0 :]
    m = re.match(r"([A-Za-z])(?![A-Za-z0-9])", rest)
    if not m or m.group(1).upper() not in letters:
        return None, False
    letter, rest = m.group(1), rest[m.end() :]
    rest = rest[_CLOSE.match(rest).end() if _CLOSE.match(rest) else 0 :]
    more = _MORE.match(rest)
    spaced = more is not None and not re.search(r"[,/|&]|\b(?:or|and|vs)\b", more.group(0), re.IGNORECASE)
    if (more and more.group(1).upper() in letters and more.group(1).upper() != letter.upper()
            and not (spaced and more.group(1).islower())):
        return None, True  # 'A or B', 'A/B', 'A, B, C or D', 'A B'; 'B a classic case' is prose
    if (re.match(r"[ \t]+[a-z]", rest) and (letter in "Aa" or letter.islower())
            and not re.match(r"[ \t]+(?:is|was|because|since|as|which)\b", rest)):
        return None, False  # 'Answer: A lot of evidence ...', 'answer: a bit more'
    if letter.islower() and not re.match(r"\s*(?:$|[.)\]*_,;:}\n]|\s+(?:is|because)\b)", rest):
        return None, False
    return letter.upper(), False


def find_letter(text: str, letters: str = "ABCD") -> tuple[str | None, str]:
    """(letter, "") for the reply's final multiple-choice answer, (None, HEDGED) when that answer names
    more than one option, (None, "") when the reply has none. The final answer is the last committed one:
    an 'Answer: X' / 'the answer is X' statement (the letter may sit on the next line, in \\(X\\), [X],
    \\textbf{X}, or as 'Option X'), a \\boxed{X} (boxes side by side naming different letters are a
    hedge), or a later 'wait, actually it's X'. Letters in running text never count."""
    found: list[tuple[int, str | None, bool]] = []
    for m in _LETTER_CUE.finditer(text):
        line = text[m.end() :].split("\n", 1)[0]
        letter, hedged = _letter_payload(line, letters)
        if letter or hedged:
            found.append((m.start(), letter, hedged))
    boxes = _boxes(text)
    for i, (start, _end, box) in enumerate(boxes):
        letter, hedged = _letter_payload(box, letters)
        if i and letter and _BOX_JOIN.fullmatch(text[boxes[i - 1][1] : start]):
            prev, _ = _letter_payload(boxes[i - 1][2], letters)
            hedged = prev is not None and prev != letter
            letter = None if hedged else letter
        if letter or hedged:
            found.append((start, letter, hedged))
    if found:
        after = [m for m in _LETTER_REVISION.finditer(text) if m.start() > found[-1][0] and m.group(1) in letters]
        found += [(m.start(), m.group(1), False) for m in after[-1:]]
    if not found:
        return None, ""
    _, letter, hedged = max(found, key=lambda f: f[0])
    return (None, HEDGED) if hedged else (letter, "")


def extract_letter(text: str, letters: str = "ABCD") -> str | None:
    """The final multiple-choice letter (find_letter), or None when there is none or it is hedged."""
    return find_letter(text, letters)[0]


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
# Box-drawing characters as the ASCII a grid is drawn with: '│' is a bar, '─' a dash, corners and joints '+'.
_BOX_DRAWING = str.maketrans({**dict.fromkeys("│┃║┆┇┊┋", "|"), **dict.fromkeys("─━═┄┅┈┉", "-"),
                              **dict.fromkeys("┼╋╬┬┴├┤┌┐└┘╔╗╚╝╠╣╦╩╤╧╟╢╪╫╞╡┠┨┯┷", "+")})


def _blocks(text: str, cell: str) -> list[dict]:
    """Runs of grid rows: {'end', 'rows', 'after_rule', 'after_blank', 'single', 'ragged'} in order.

    A row is a line holding only cells (digits by default) separated by spaces, commas or bars (box-drawing
    bars too), optionally in brackets (`[0, 1, 2],`) or after a 'Row 3:' label. A box separator inside a
    grid (`------+------`, `---|---`, `───┼───`) is skipped; a markdown rule (`---`, `***`, `===`) or any
    other line ends the run. A run right after a rule or after blank lines only is marked, so a grid drawn
    in bands can be joined when its expected shape is known. `single` marks a one-row run of one token
    ('3', '12'): a stray number, not a grid, unless a lead-in such as 'Output:' introduces it. `ragged`
    marks a run whose rows differ in length: an attempt at a grid, not a grid.
    """
    row_re = re.compile(rf"^(?:{cell})(?:[\s,|]*(?:{cell}))*$")
    blocks: list[dict] = []
    run: list[list[str]] = []
    cur = {"end": 0, "after_rule": False, "after_blank": False, "lead_in": False, "token": True}
    pos, prev_line, rule_pending, blank_only = 0, "", False, False

    def flush() -> None:
        if run:
            blocks.append({"end": cur["end"], "rows": [list(r) for r in run], "after_rule": cur["after_rule"],
                           "after_blank": cur["after_blank"], "ragged": len({len(r) for r in run}) > 1,
                           "single": len(run) == 1 and cur["token"] and not cur["lead_in"]})
        run.clear()

    for raw in text.splitlines(keepends=True):
        pos += len(raw)
        line = raw.translate(_BOX_DRAWING)
        body = _ROW_LABEL.sub("", line).strip().strip("[],|").strip()
        if body and row_re.match(body):
            if not run:
                cur.update(after_rule=rule_pending, after_blank=blank_only, token=True,
                           lead_in=bool(_LEAD_IN.search(prev_line)))
            run.append(re.findall(cell, body))
            cur["end"] = pos
            cur["token"] = cur["token"] and not re.search(r"[\s,|]", body)
            rule_pending = blank_only = False
        elif line.strip() and _SEPARATOR.match(line) and "`" not in line:
            if not (run and re.search(r"[+|]", line)):  # '------+------' inside a grid is skipped
                had_run = bool(run)
                flush()
                rule_pending = had_run
        elif not line.strip():
            blank_only = bool(run) or blank_only
            flush()
        else:
            flush()
            rule_pending = blank_only = False
        if line.strip():
            prev_line = line
    flush()
    return blocks


def extract_grids(text: str, cell: str = r"\d") -> list[tuple[int, list[list[str]]]]:
    """All well-formed grids in a reply as (end position, rows of cell strings), in order of position:
    runs of rows (see _blocks; stray one-token lines are left out unless nothing else is there) and JSON
    lists `[[0,1],[2,3]]` written on one line."""
    blocks = [b for b in _blocks(text, cell) if not b["ragged"]]
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
    """The last well-formed grid in the reply, or None. With a shape: the last grid of that shape, runs
    split only by plain dashed rules or blank lines also tried joined (a Sudoku drawn in bands); and when
    a later attempt at a grid is malformed (rows of different lengths, or a block of rows of another
    shape), the reply's final grid is that attempt: None, never an earlier grid."""
    grids = extract_grids(text, cell)
    if shape is None:
        return grids[-1][1] if grids else None
    grids = [g for g in grids if (len(g[1]), len(g[1][0])) == shape]
    blocks = _blocks(text, cell)
    for i in range(len(blocks)):
        rows, j = list(blocks[i]["rows"]), i
        while (j + 1 < len(blocks) and (blocks[j + 1]["after_rule"] or blocks[j + 1]["after_blank"])
               and len(rows) < shape[0]):
            j += 1
            rows += blocks[j]["rows"]
        if j > i and (len(rows), len(rows[0])) == shape and len({len(r) for r in rows}) == 1:
            grids.append((blocks[j]["end"], rows))
    grids.sort(key=lambda g: g[0])
    if not grids:
        return None
    attempts = [b for b in blocks if not b["single"] and b["end"] > grids[-1][0]]
    return None if attempts else grids[-1][1]
