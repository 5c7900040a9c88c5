"""Build the sandbox image once (offline: debootstrap + docker import) and reuse it by tag.

`python -m sandboxes.image` builds the image if it is missing and prints its tag.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_TAG = "sepo-sandbox:py3"
SUITE = "bookworm"
MIRROR = os.environ.get("SEPO_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python3 (not only python3-minimal) so MBPP solutions find the whole standard library (re, heapq, ...).
PACKAGES = ["python3-minimal", "python3"]
IMAGE_DIR = Path(__file__).with_name("image")
CHANGES = [
    'CMD ["sleep", "infinity"]',
    "USER 65534:65534",
    "WORKDIR /tmp",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    "ENV PYTHONUNBUFFERED=1",
    "ENV HOME=/tmp",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LABEL sepo-bench.image=1",
]
_PRUNE = ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
          "usr/share/locale", "usr/share/info", "var/log"]


def cache_dir() -> Path:
    """Where the debootstrap root filesystem tarball is kept (~/.cache/sepo-bench)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sepo-bench"


def rootfs_tarball() -> Path:
    return cache_dir() / f"rootfs-{SUITE}-{'-'.join(PACKAGES)}.tar"


def _client():
    from sandboxes.engine import connect

    return connect()


def image_exists(tag: str = DEFAULT_TAG, client=None) -> bool:
    import docker

    client = client or _client()
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_rootfs(log=print) -> Path:
    """debootstrap a minimal Debian with python3 and cache it as a tarball; returns the tarball path."""
    out = rootfs_tarball()
    if out.exists():
        return out
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: `apt-get install debootstrap` (or use --dockerfile).")
    if os.geteuid() != 0:
        raise RuntimeError("debootstrap needs root: run `sudo python -m sandboxes.image` once.")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=out.parent))
    try:
        log(f"debootstrap {SUITE} into {work} (a few minutes)...")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                        str(work), MIRROR], check=True, stdout=subprocess.DEVNULL)
        for rel in _PRUNE:
            p = work / rel
            if p.is_dir():
                shutil.rmtree(p)
                p.mkdir()
        tmp = out.with_suffix(".tmp")
        subprocess.run(["tar", "--numeric-owner", "-C", str(work), "-cf", str(tmp), "."], check=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def import_rootfs(tarball: Path, tag: str = DEFAULT_TAG, client=None) -> str:
    """`docker import` the tarball as `tag` with the sandbox defaults (non-root user, sleep)."""
    client = client or _client()
    repo, _, version = tag.partition(":")
    client.api.import_image_from_file(str(tarball), repository=repo, tag=version or "latest",
                                      changes=CHANGES)
    client.images.get(tag)  # raises if the import failed
    return tag


def build_from_dockerfile(tag: str = DEFAULT_TAG, base: str = "python:3.11-slim", client=None) -> str:
    """The online path: build sandboxes/image/Dockerfile FROM a slim Python image (needs a registry)."""
    client = client or _client()
    client.images.build(path=str(IMAGE_DIR), tag=tag, buildargs={"BASE": base}, rm=True)
    return tag


def ensure_image(tag: str = DEFAULT_TAG, *, dockerfile: bool = False, rebuild: bool = False,
                 fresh: bool = False, client=None, log=print) -> str:
    """Return `tag`, building it first if it is missing (or if rebuild; fresh also redoes debootstrap)."""
    client = client or _client()
    if not (rebuild or fresh) and image_exists(tag, client):
        return tag
    t0 = time.monotonic()
    if dockerfile:
        build_from_dockerfile(tag, client=client)
    else:
        if fresh and rootfs_tarball().exists():
            rootfs_tarball().unlink()
        import_rootfs(build_rootfs(log), tag, client)
    log(f"built {tag} in {time.monotonic() - t0:.1f}s")
    return tag


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tag", default=DEFAULT_TAG)
    ap.add_argument("--dockerfile", action="store_true", help="build FROM python:3.11-slim (needs a registry)")
    ap.add_argument("--rebuild", action="store_true", help="re-import even if the image exists")
    ap.add_argument("--fresh", action="store_true", help="also redo debootstrap (ignore the cached rootfs)")
    args = ap.parse_args(argv)
    print(ensure_image(args.tag, dockerfile=args.dockerfile, rebuild=args.rebuild, fresh=args.fresh,
                       log=lambda m: print(m, file=sys.stderr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
