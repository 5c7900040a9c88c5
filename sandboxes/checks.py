"""Tests split between the sandbox and the host.

Each assert is parsed here (ast). Its program-rooted sub-expressions (a name the program defines, a call
or attribute on one: `f(x)`, `obj.method(y)`, `root`) become sandbox steps, evaluated after the program
in its namespace and sent back as data; everything else (the expected side, `set()`, `math.isclose`,
`not`, the comparison) is evaluated here with those values in their place. The program never sees what
it is compared against, and its objects never take part in a comparison: only built-in data comes back.

Names the host resolves: builtins, names bound by the import statements of the setup and the tests, and
standard modules the tests name (`math.isclose`, `sys.getsizeof`). Every other name is the program's. A
builtin's name is the program's when it is the function under test (MBPP 126 asks for `sum`: a name
every assert calls on its left side and the tests use nowhere else). Other test statements (MBPP's
`root = Node(1)`) run in the sandbox as steps of their own.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import operator
import sys
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

REMOTE = "__sepo_remote__"
BINOP = "__sepo_binop__"
_COMPREHENSIONS = (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)
_MAX_LEN = 10_000_000  # items a host-side `*` may build from a program's value


@dataclass(frozen=True)
class Test:
    label: str  # the statement as written (shortened), for reasons
    kind: str  # "assert" (evaluated here) or "exec" (a statement run in the sandbox)
    steps: tuple[int, ...]  # the sandbox steps this test needs, in order
    code: CodeType | None = None  # asserts: the host's expression, steps in place as REMOTE(k)


@dataclass(frozen=True)
class Plan:
    steps: list[list[str]]  # [kind, source] for the sandbox: "eval" an expression, "exec" a statement
    tests: list[Test]
    namespace: dict[str, Any] = field(default_factory=dict)  # the host's names


class NotData(Exception):
    """A step's value did not come back as built-in data."""


class Raised(Exception):
    """A step raised in the sandbox (the message is its 'Type: message')."""


class Missing(Exception):
    """A step never reported (the program exited or hung first)."""


def _label(src: str, node: ast.stmt) -> str:
    text = (ast.get_source_segment(src, node) or ast.unparse(node)).strip().replace("\r", "").replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def _host_imports(tree: ast.Module | None, ns: dict[str, Any]) -> None:
    """Run the import statements of trusted dataset code here, binding their names for the host side."""
    for stmt in tree.body if tree else []:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            try:
                exec(compile(ast.Module([stmt], []), "<tests>", "exec"), ns)  # noqa: S102 - dataset imports
            except Exception:  # noqa: BLE001, S110 - not importable here: the names stay the program's
                pass


def _program_names(tree: ast.Module, asserts: list[ast.Assert]) -> set[str]:
    """Names the tests' own statements bind (sandbox side), and a builtin that is the function under test."""
    bound = {n.id for s in tree.body if not isinstance(s, ast.Assert | ast.Import | ast.ImportFrom)
             for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    subjects: dict[str, int] = {}
    for a in asserts:
        t = a.test.operand if isinstance(a.test, ast.UnaryOp) else a.test
        left = t.left if isinstance(t, ast.Compare) else t
        if isinstance(left, ast.Call) and isinstance(left.func, ast.Name):
            subjects[left.func.id] = subjects.get(left.func.id, 0) + 1
    loads: dict[str, int] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            loads[n.id] = loads.get(n.id, 0) + 1
    return bound | {k for k, c in subjects.items() if c == len(asserts) and loads.get(k) == c}


class _Split(ast.NodeTransformer):
    """Replace the program-rooted parts of one assert by REMOTE(k) calls, recording them as steps."""

    def __init__(self, is_host, steps: list[list[str]]) -> None:
        self.is_host, self.steps, self.mine = is_host, steps, []

    def rooted(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return not self.is_host(node.id)
        if isinstance(node, ast.Attribute):
            return self.rooted(node.value)
        if isinstance(node, ast.Call):
            return self.rooted(node.func)
        return False

    def uses_program(self, node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and not self.is_host(n.id) for n in ast.walk(node))

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.expr) and (self.rooted(node) or isinstance(node, _COMPREHENSIONS)
                                           and self.uses_program(node)):
            self.mine.append(len(self.steps))
            self.steps.append(["eval", ast.unparse(node)])
            return ast.Call(ast.Name(REMOTE, ast.Load()), [ast.Constant(self.mine[-1])], [])
        node = self.generic_visit(node)
        if isinstance(node, ast.BinOp) and any(isinstance(n, ast.Name) and n.id == REMOTE for n in ast.walk(node)):
            return ast.Call(ast.Name(BINOP, ast.Load()), [ast.Constant(type(node.op).__name__), node.left,
                                                          node.right], [])
        return node


def make_plan(tests: str, setup: str = "") -> Plan:
    """Split test statements into sandbox steps and host checks; raises SyntaxError for broken tests."""
    tree = ast.parse(tests, "<tests>")
    ns: dict[str, Any] = {"__builtins__": builtins}
    try:
        _host_imports(ast.parse(setup, "<setup>") if setup.strip() else None, ns)
    except SyntaxError:
        pass  # the sandbox reports it
    _host_imports(tree, ns)
    asserts = [s for s in tree.body if isinstance(s, ast.Assert)]
    mine = _program_names(tree, asserts)
    for n in ast.walk(tree):
        if (isinstance(n, ast.Name) and n.id not in ns and n.id not in mine and n.id in sys.stdlib_module_names
                and not hasattr(builtins, n.id)):
            try:
                ns[n.id] = importlib.import_module(n.id)
            except Exception:  # noqa: BLE001, S110 - not importable here: the program's name
                pass

    def is_host(name: str) -> bool:
        return name not in mine and (name in ns or hasattr(builtins, name))

    steps: list[list[str]] = []
    out: list[Test] = []
    for stmt in tree.body:
        label = _label(tests, stmt)
        if isinstance(stmt, ast.Assert):
            split = _Split(is_host, steps)
            expr = ast.fix_missing_locations(ast.Expression(split.visit(stmt.test)))
            out.append(Test(label, "assert", tuple(split.mine), compile(expr, "<tests>", "eval", dont_inherit=True)))
        else:
            steps.append(["exec", ast.unparse(stmt)])
            out.append(Test(label, "exec", (len(steps) - 1,)))
    return Plan(steps, out, ns)


class Opaque:
    """A program object with Python's default truth: true in a truth test, and usable in nothing else."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"a {self.name} object"

    def _refuse(self, *_a: object, **_k: object):
        raise NotData(f"got a {self.name}, not a built-in value")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __contains__ = __iter__ = __len__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __getitem__ = __hash__ = _refuse
    __float__ = __int__ = __index__ = __round__ = __abs__ = __neg__ = __truediv__ = __rtruediv__ = _refuse

    def __getattr__(self, name: str):
        return self._refuse()


def _binop(op: str, a: Any, b: Any) -> Any:
    """A binary operation on a program's value, refusing ones that would make the host allocate without
    bound ('x' * 10**12, 2 ** 10**9, 1 << 10**9)."""
    ints = [v for v in (a, b) if isinstance(v, int)]
    sized = [v for v in (a, b) if isinstance(v, str | bytes | list | tuple)]
    if op == "Mult" and ints and sized and len(sized[0]) * abs(ints[0]) > _MAX_LEN:
        raise NotData("a product too large to build")
    if op == "Pow" and isinstance(b, int) and isinstance(a, int) and abs(b) > 10_000 and abs(a) > 1:
        raise NotData("a power too large to build")
    if op in ("LShift", "RShift") and isinstance(b, int) and abs(b) > 100_000:
        raise NotData("a shift too large to build")
    fn = {"Add": operator.add, "Sub": operator.sub, "Mult": operator.mul, "Div": operator.truediv,
          "FloorDiv": operator.floordiv, "Mod": operator.mod, "Pow": operator.pow, "LShift": operator.lshift,
          "RShift": operator.rshift, "BitOr": operator.or_, "BitXor": operator.xor, "BitAnd": operator.and_,
          "MatMult": operator.matmul}[op]
    return fn(a, b)


def _show(v: Any) -> str:
    try:
        r = repr(v)
    except Exception:  # noqa: BLE001
        r = "?"
    return r if len(r) <= 120 else r[:117] + "..."


def check(plan: Plan, test: Test, outcomes: dict[int, tuple[str, Any]]) -> tuple[bool, str]:
    """(held, why not) for one test, given each step's outcome: ("val", value), ("raise", text) or
    ("bad", why the value is not data); a step without an outcome raises Missing."""

    def remote(k: int) -> Any:
        if k not in outcomes:
            raise Missing(k)
        kind, v = outcomes[k]
        if kind == "raise":
            raise Raised(v)
        if kind == "bad":
            raise NotData(v)
        return v

    if test.kind == "exec":
        k = test.steps[0]
        if k not in outcomes:
            raise Missing(k)
        kind, v = outcomes[k]
        return (True, "") if kind == "val" else (False, f"error: {v} (in {test.label})")
    ns = dict(plan.namespace, **{REMOTE: remote, BINOP: _binop})
    try:
        ok = bool(eval(test.code, ns))  # noqa: S307 - the dataset's expression, the program's values as data
    except Raised as e:
        return False, f"error: {e.args[0]} (in {test.label})"
    except NotData as e:
        return False, f"failed: {test.label} ({e.args[0]})"
    except Missing:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. set() of an unhashable value
        return False, f"error: {type(e).__name__}: {_show(str(e))[1:-1]} (in {test.label})"
    if ok:
        return True, ""
    got = [outcomes[k][1] for k in test.steps if outcomes.get(k, ("",))[0] == "val"]
    return False, f"failed: {test.label}" + (f" (got {_show(got[0])})" if got else "")
