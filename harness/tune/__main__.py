"""`python -m harness.tune [flags]`: the same as `sepo-bench tune [flags]`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from harness.cli import main as cli_main

    return cli_main(["tune", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
