"""Open an HTML page (a report, or an MLflow UI address) in headless Chromium and take a screenshot.

    .venv/bin/python scripts/screenshot.py runs/my-exp/report/report.html --out report.png
    .venv/bin/python scripts/screenshot.py http://127.0.0.1:5000/#/experiments/1 --out ui.png --wait 8000

For a report it also checks the page as Chromium rendered it: every image decoded (none broken) and every
required table present; it exits 1 and says what is wrong otherwise. Needs Debian's `chromium` package
(`apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIRED_TABLES = ("table1", "truncation", "method_cost", "comparisons", "cost")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium_args(binary: str, wait_ms: int) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", f"--virtual-time-budget={wait_ms}",
            f"--user-data-dir={tempfile.mkdtemp(prefix='sepo-chromium-')}"]


def _url(target: str) -> str:
    return target if re.match(r"^[a-z]+://", target) else Path(target).resolve().as_uri()


def screenshot(target: str, out: Path, *, width: int = 1400, height: int = 4000, wait_ms: int = 3000,
               binary: str | None = None, timeout_s: float = 120) -> Path:
    binary = binary or find_chromium()
    if binary is None:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium")
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [*_chromium_args(binary, wait_ms), f"--window-size={width},{height}", f"--screenshot={out.resolve()}",
            _url(target)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return out


def rendered_dom(target: str, *, wait_ms: int = 3000, binary: str | None = None, timeout_s: float = 120) -> str:
    binary = binary or find_chromium()
    if binary is None:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium")
    proc = subprocess.run([*_chromium_args(binary, wait_ms), "--dump-dom", _url(target)], capture_output=True,
                          text=True, timeout=timeout_s)
    if proc.returncode != 0 or "<body" not in proc.stdout:
        raise RuntimeError(f"Chromium could not render {target} (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def check_static(html_text: str, required: tuple[str, ...] = REQUIRED_TABLES) -> list[str]:
    """Problems found in the file itself: images that are not decodable PNGs, missing tables."""
    problems = []
    imgs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html_text)
    if not imgs:
        problems.append("no images")
    for i, src in enumerate(imgs):
        if not src.startswith("data:image/png;base64,"):
            problems.append(f"image {i + 1} is not embedded (src {src[:60]!r})")
            continue
        try:
            raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"image {i + 1}: broken base64")
            continue
        if not raw.startswith(PNG_MAGIC):
            problems.append(f"image {i + 1}: not a PNG")
            continue
        try:
            from PIL import Image

            Image.open(io.BytesIO(raw)).verify()
        except ImportError:
            pass
        except Exception as exc:  # noqa: BLE001 (any decoding failure is a broken image)
            problems.append(f"image {i + 1}: broken PNG ({exc})")
    for key in required:
        if not re.search(rf"<table\b[^>]*\bid=\"{re.escape(key)}\"", html_text):
            problems.append(f"table {key!r} missing")
    return problems


def check_rendered(dom: str, required: tuple[str, ...] = REQUIRED_TABLES) -> list[str]:
    """Problems as Chromium saw the page: images that did not decode, tables not in the DOM."""
    problems = []
    m = re.search(r"<body[^>]*\bdata-broken-images=\"(\d+)\"", dom)
    if m is None:
        problems.append("the page's image check did not run")
    elif int(m.group(1)):
        problems.append(f"{m.group(1)} image(s) did not render")
    for key in required:
        if not re.search(rf"<table\b[^>]*\bid=\"{re.escape(key)}\"", dom):
            problems.append(f"table {key!r} not rendered")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="an HTML file or an http(s) address")
    ap.add_argument("--out", type=Path, default=None, help="the PNG to write (default: beside the HTML file)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--wait", type=int, default=3000, help="milliseconds of page time before the capture")
    ap.add_argument("--require", default=",".join(REQUIRED_TABLES), help="table ids a report must have")
    ap.add_argument("--no-check", action="store_true", help="only take the screenshot (e.g. of the MLflow UI)")
    args = ap.parse_args(argv)
    is_file = not re.match(r"^[a-z]+://", args.target)
    out = args.out or (Path(args.target).with_suffix(".png") if is_file else Path("screenshot.png"))
    required = tuple(t for t in args.require.split(",") if t)
    problems: list[str] = []
    if is_file and not args.no_check:
        problems += check_static(Path(args.target).read_text(encoding="utf-8"), required)
        problems += check_rendered(rendered_dom(args.target, wait_ms=args.wait), required)
    shot = screenshot(args.target, out, width=args.width, height=args.height, wait_ms=args.wait)
    print(json.dumps({"screenshot": str(shot), "bytes": shot.stat().st_size, "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
