"""The two locks: requirements.lock is what the Airflow image installs (no test tooling), requirements-dev.lock is the
venv of `make` (the same runtime pins plus the test tools), and both serve Python 3.11 and the Astro Runtime's 3.12."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _via(path) -> dict[str, set[str]]:
    """What pulled each package into a uv lock (its `# via` annotation)."""
    via: dict[str, set[str]] = {}
    name = None
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==", line):
            name = canonicalize_name(match.group(1))
            via[name] = set()
        elif name and (match := re.match(r"^\s+#\s+(?:via\s+)?(\S.*)$", line)) and match.group(1) != "via":
            via[name].add(match.group(1).strip())
    return via


def _top_level(path) -> dict[str, Requirement]:
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def _runtime_python() -> str:
    """The Python of the Astro Runtime image the Dockerfile builds on (its `-python-X.Y` tag)."""
    return re.search(r"^FROM \S+-python-(\d+\.\d+)\b", (ROOT / "Dockerfile").read_text(), re.M).group(1)


def test_the_runtime_lock_has_no_test_tooling_and_the_dev_lock_keeps_its_pins():
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    top = _top_level(ROOT / "requirements.txt")
    dev_only = set(_top_level(ROOT / "requirements-dev.txt")) - set(top)
    assert {"pytest", "ruff", "selenium", "aiosmtpd"} <= dev_only
    # the image gets none of them, except what a runtime package itself depends on (psutil: Airflow)
    via = _via(ROOT / "requirements.lock")
    for name in dev_only & set(runtime):
        assert via[name] and not any("requirements" in v for v in via[name]), (name, via[name])
    assert not {"pytest", "ruff", "selenium", "aiosmtpd"} & set(runtime)
    assert dev_only <= set(dev)
    assert {name: dev.get(name) for name in runtime} == runtime  # tests run against the image's exact versions
    for name, req in top.items():  # the lock is not stale: every top-level requirement is pinned and satisfied
        assert name in runtime and req.specifier.contains(runtime[name], prereleases=True), (name, str(req))


def test_pyspark_finds_distutils_for_its_pandas_check():
    """PySpark 3.5's pandas version check imports distutils, which Python 3.12 dropped; setuptools (in the runtime
    lock) provides it. This is what breaks `mapInPandas` (the generator) on the Astro Runtime's Python."""
    from pyspark.sql.pandas.utils import require_minimum_pandas_version, require_minimum_pyarrow_version

    require_minimum_pandas_version()
    require_minimum_pyarrow_version()
    assert "setuptools" in _pins(ROOT / "requirements.lock")


@pytest.mark.network
@pytest.mark.parametrize("which", ["requirements.txt", "requirements-dev.txt"])
def test_the_lock_resolves_unchanged_on_the_runtime_images_python(which, tmp_path):
    """The locks are resolved for 3.11; the Astro Runtime runs 3.12: resolving for it within the lock's pins must give
    exactly the same set (a pin without 3.12 support, or a package only 3.12 needs, fails here). Needs PyPI."""
    lock = ROOT / ("requirements.lock" if which == "requirements.txt" else "requirements-dev.lock")
    out = tmp_path / "resolved.txt"
    run = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "compile", "-q", "--no-header", "--no-annotate", "--python-version",
         _runtime_python(), which, "-c", str(lock), "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert _pins(out) == _pins(lock)
