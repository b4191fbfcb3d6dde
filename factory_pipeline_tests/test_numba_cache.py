"""The numba cache directory follows the package's sources (no stale kernel across a change)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from factory_pipeline import numba_cache


def _package(root: Path) -> Path:
    package = root / "pkg"
    (package / "engine").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "engine" / "sweep.py").write_text("def kernel():\n    return run_bars()\n")
    (package / "engine" / "simulator.py").write_text("def run_bars():\n    return 1\n")
    return package


def test_a_change_to_any_source_file_changes_the_directory(tmp_path: Path) -> None:
    package = _package(tmp_path)
    before = numba_cache.cache_dir(package)
    assert numba_cache.cache_dir(package) == before  # stable while nothing changes
    # the callee changes, the caller's file does not: the caller's cached kernel must not load
    (package / "engine" / "simulator.py").write_text("def run_bars():\n    return 2\n")
    assert numba_cache.cache_dir(package) != before


def test_a_renamed_file_changes_the_directory(tmp_path: Path) -> None:
    package = _package(tmp_path)
    before = numba_cache.source_hash(package)
    (package / "engine" / "sweep.py").rename(package / "engine" / "sweeps.py")
    assert numba_cache.source_hash(package) != before


def test_a_checkout_keeps_the_cache_in_the_project(tmp_path: Path) -> None:
    package = _package(tmp_path)
    assert (
        numba_cache.cache_dir(package).parent
        == Path.home() / ".cache" / "factory_pipeline" / "numba"
    )
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert numba_cache.cache_dir(package).parent == tmp_path / ".numba_cache"


def test_an_explicit_cache_dir_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    numba_cache.configure()
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/else"


@pytest.mark.parametrize(
    "imports", ["import factory_pipeline, numba", "import numba, factory_pipeline"]
)
def test_numba_uses_it_in_a_fresh_interpreter(imports: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    code = f"{imports}\nfrom numba.core import config\nprint(config.CACHE_DIR)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    package = Path(numba_cache.__file__).resolve().parent
    assert out == str(numba_cache.cache_dir(package))
