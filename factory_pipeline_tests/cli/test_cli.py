"""The `factory` command: one-line errors with a non-zero exit, and a real materialization in a
fresh data folder and Dagster home (subprocess, so settings come from the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from factory_pipeline.cli import main


def _factory(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FACTORY_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "FACTORY_EMBEDDING_BACKEND": "hash",
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from factory_pipeline.cli import main; raise SystemExit(main())",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unknown_bench_suite_is_one_line_error(capsys):
    assert main(["bench", "no-such-suite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: unknown bench suite(s) no-such-suite")


def test_bad_selection_and_missing_partition_are_clear(tmp_path):
    bad = _factory(tmp_path, "materialize", "no_such_asset")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: asset selection 'no_such_asset'")
    missing = _factory(tmp_path, "materialize", "market_bars")
    assert missing.returncode == 2
    assert "is partitioned: give --partition" in missing.stderr


def test_materialize_then_status(tmp_path):
    done = _factory(tmp_path, "materialize", "market_bars", "--partition", "2024-06-01|SOLUSDT")
    assert done.returncode == 0, done.stderr
    assert "materialized market_bars" in done.stdout
    status = _factory(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    line = next(row for row in status.stdout.splitlines() if "SOLUSDT 15m bars" in row)
    assert line.split()[-1] == "96"
    # the run is recorded in the persistent instance the UI reads
    assert any((tmp_path / "dagster_home").iterdir())


def test_status_on_an_empty_folder(tmp_path):
    result = _factory(tmp_path, "status")
    assert result.returncode == 0
    assert "run `factory run` first" in result.stdout


@pytest.mark.slow
def test_bench_quick_writes_flat_json(tmp_path):
    out = tmp_path / "bench.json"
    result = _factory(tmp_path, "bench", "market", "--quick", "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["market.store_bars_per_s"] > 0
    assert figures["market.resample_bars_per_s"] > 0
    assert "store_bars_per_s" in result.stdout
