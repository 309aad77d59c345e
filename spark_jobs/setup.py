"""The wheel's version is computed at build time (medallion/version.py: base release + digest of the sources), so
every build of changed code is a new file; everything else is declared in pyproject.toml."""

import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "medallion"))
from version import build_version  # noqa: E402  (medallion/version.py, standard library only)

setup(version=build_version(HERE))
