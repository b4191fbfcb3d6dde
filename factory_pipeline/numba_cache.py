"""Where numba keeps the compiled kernels: one directory per version of this package's sources.

numba validates a cached kernel by its own source file only. A kernel whose file did not change
but that calls (and inlines) a kernel from a file that did, e.g. the sweep kernels over the
simulator's ``run_bars``, would load its old machine code and silently run the old semantics.
Keying the cache directory by a hash of every source file of the package rules that out: any
change compiles everything again (about a minute on two cores), never a mix.

:func:`configure` runs when the package is imported, before any module imports numba, and only
sets ``NUMBA_CACHE_DIR`` when the environment does not: ``<project>/.numba_cache/<hash>`` for a
checkout (``make clean`` removes it), ``~/.cache/factory_pipeline/numba/<hash>`` otherwise.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def source_hash(package: Path = _PACKAGE) -> str:
    """First 12 hex digits of the SHA-1 of the package's ``.py`` files (paths and contents, in
    path order)."""
    digest = hashlib.sha1()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_dir(package: Path = _PACKAGE) -> Path:
    """The cache directory for the package's current sources."""
    project = package.parent
    if (project / "pyproject.toml").is_file():
        root = project / ".numba_cache"
    else:
        root = Path.home() / ".cache" / "factory_pipeline" / "numba"
    return root / source_hash(package)


def configure() -> None:
    """Point numba at :func:`cache_dir` unless ``NUMBA_CACHE_DIR`` is already set (numba reads
    the variable when it is first imported; if something imported it earlier, its config is
    set too, which still takes effect for kernels defined afterwards: all of this package's)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    directory = str(cache_dir())
    os.environ["NUMBA_CACHE_DIR"] = directory
    if "numba" in sys.modules:
        from numba.core import config

        config.CACHE_DIR = directory
