"""Run every command of the README's "Commands" section in a clean clone, on the smallest model.

    python scripts/check_readme.py            # clone HEAD to a temp folder, run each command, report
    python scripts/check_readme.py --keep     # keep the clone to look at its outputs

A command is a line of a ```bash block between the "## Commands" heading and the next "## " heading that
starts with `.venv/bin/` or `make ` (comments after `#` are dropped). The clone gets a symlink to this
checkout's .venv (the install itself is what `make test` checks) and SEPO_LOCAL_MODEL=smollm2-135m, so every
embedded role runs the 135M model; `make` targets that install or build are run as written. Each command
must exit 0; the script prints one line per command with its wall time, and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = ("make ui", "make reproduce", "make test")  # a server that runs until stopped; the hour-long protocol; CI


def commands(readme: str) -> list[str]:
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    out = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            cmd = line.split(" #", 1)[0].strip()
            if cmd.startswith((".venv/bin/", "make ")) and not cmd.startswith(SKIP):
                out.append(cmd)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the clone")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="readme-check-"))
    clone = tmp / "main"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "SEPO_LOCAL_MODEL": "smollm2-135m",
           "SEPO_DATA_DIR": os.environ.get("SEPO_DATA_DIR", str(ROOT.parent / "shared" / "data"))}
    failed = 0
    for cmd in commands((clone / "README.md").read_text()):
        t0 = time.monotonic()
        res = subprocess.run(cmd, shell=True, cwd=clone, env=env, capture_output=True, text=True)
        ok = res.returncode == 0
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {time.monotonic() - t0:7.1f} s  {cmd}", flush=True)
        if not ok:
            print("    " + "\n    ".join((res.stdout + res.stderr).strip().splitlines()[-15:]), flush=True)
    print(f"{failed} of the README's commands failed" if failed else "every README command exited 0")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"clone kept in {clone}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
