"""Every canonical MBPP solution must pass its own tests in the Docker sandbox (974/974, sanitized 427/427)."""

from __future__ import annotations

import importlib.util

import pytest

pytest.register_assert_rewrite("tests.sandbox_fixtures")
from tests.sandbox_fixtures import ROOT, open_docker

_spec = importlib.util.spec_from_file_location("mbpp_canonical", ROOT / "scripts" / "mbpp_canonical.py")
mbpp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mbpp)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(("sanitized", "n"), [(False, 974), (True, 427)])
def test_mbpp_canonical_solutions_pass(sanitized, n) -> None:
    items = mbpp.load_programs(sanitized)
    assert len(items) == n
    sb = open_docker()
    try:
        results = mbpp.run_all(sb, items)
    finally:
        sb.close()
    failed = [(tid, r.reason) for (tid, _), r in zip(items, results, strict=True) if not r.passed]
    assert not failed
