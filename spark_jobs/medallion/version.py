"""The wheel's version: a base release plus a digest of the sources it is built from, so every build that changes
code gets a new file name.

Why: Airflow's runs name the wheel by path. With one fixed version (`0.1.0`) at one fixed path, a deploy that
failed half-way, a cached library on a cluster, or a second Airflow still pointing at the old path would run a
stale wheel without anyone noticing. With `0.1.0+src.<digest>` the build (spark_jobs/setup.py) and the Airflow side
(medallion_airflow.settings) compute the same name from the same tree: an Airflow image built from one commit
submits exactly the wheel of that commit, and fails with "file not found" rather than running another one.

Standard library only: setup.py imports this file inside an isolated build environment.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BASE_VERSION = "0.1.0"
PACKAGE = "medallion_jobs"
DIGEST_LENGTH = 12


def source_files(project_dir: str | Path) -> list[Path]:
    """What the wheel is built from: the package's Python files and the build definition, in a fixed order."""
    root = Path(project_dir)
    files = sorted(p for p in (root / "medallion").rglob("*.py") if "__pycache__" not in p.parts)
    files += [p for p in (root / "pyproject.toml", root / "setup.py") if p.is_file()]
    return files


def build_version(project_dir: str | Path | None = None) -> str:
    """`<base>+src.<digest>`: PEP 440 local version whose digest covers every source file's path and bytes."""
    root = Path(project_dir) if project_dir else Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    files = source_files(root)
    if not files:
        raise FileNotFoundError(f"no sources of {PACKAGE} under {root}")
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n"))
        digest.update(b"\0")
    return f"{BASE_VERSION}+src.{digest.hexdigest()[:DIGEST_LENGTH]}"


def wheel_name(project_dir: str | Path | None = None) -> str:
    """The file name `uv build --wheel` gives the wheel of this tree."""
    return f"{PACKAGE}-{build_version(project_dir)}-py3-none-any.whl"
