"""Running the asset graph from the command line, in the persistent Dagster instance.

``factory run`` materializes every stage in dependency order, each stage as one run over all of
its partitions (single-run backfills), in the instance under ``DAGSTER_HOME`` (``data/dagster_home``
by default), so the runs and their metadata are there when the UI is opened afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from factory_pipeline.errors import ConfigError, FactoryError
from factory_pipeline.settings import PROJECT_ROOT, default_settings


@dataclass(frozen=True)
class Stage:
    """A set of assets that share a partitions definition and run together.

    ``per_partition`` stages run one run per partition and carry on past a failed partition
    (e.g. one corrupt book must not stop the others), reporting the failures at the end.
    """

    name: str
    assets: tuple[str, ...]
    per_partition: bool = False


#: The whole graph, in dependency order. Later tracks append their stages.
PLAN: tuple[Stage, ...] = (
    Stage("market data", ("market_bars",)),
    Stage("regimes", ("regime_labels",)),
    Stage("module library", ("builtin_modules",)),
    Stage("books", ("book_pages", "kb_segments"), per_partition=True),
    Stage("knowledge", ("kb_concepts", "strategy_modules")),
    Stage("candidate systems", ("candidate_systems",)),
    Stage("backtests", ("backtests",)),
    Stage("robustness and promotion", ("system_robustness", "promotion_decisions")),
)

#: The stages `factory backfill` re-runs: design, every backtest partition, robustness, decisions.
RESEARCH_STAGES: tuple[str, ...] = ("candidate systems", "backtests", "robustness and promotion")

#: Keep the console quiet during CLI runs; the UI has the full event log.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def dagster_home() -> Path:
    """DAGSTER_HOME (set to data/dagster_home when unset), with the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or default_settings().data_dir / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    template = PROJECT_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if template.exists() and (not target.exists() or target.read_text() != template.read_text()):
        shutil.copyfile(template, target)
    return home


def load_definitions() -> dg.Definitions:
    from factory_pipeline.definitions import defs

    return defs()


def run_all(definitions: dg.Definitions | None = None, instance: Any = None) -> int:
    """Materialize every stage of PLAN; print progress and a summary."""
    from factory_pipeline.defs.knowledge.sensors import register_books

    d = definitions or load_definitions()
    inst = instance or _instance()
    register_books(inst, default_settings())
    started = time.perf_counter()
    failures: list[str] = []
    for number, stage in enumerate(PLAN, start=1):
        t0 = time.perf_counter()
        print(f"[{number}/{len(PLAN)}] {stage.name}: {', '.join(stage.assets)} ...", flush=True)
        if stage.per_partition:
            failures += _materialize_each_partition(d, inst, stage.assets)
        else:
            _materialize(d, inst, stage.assets, all_partitions=True)
        print(f"      done in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"materialized {len(PLAN)} stages in {time.perf_counter() - started:.1f} s")
    failures += run_demo_stage(d, inst)
    for line in failures:
        print(f"  failed: {line}")
    print()
    from factory_pipeline.cli.status import print_decisions, print_status

    print_status()
    print()
    return print_decisions()


#: Days of stored market data `factory run` replays as demo trading on the local exchange.
DEMO_REPLAY_DAYS = 3


def run_demo_stage(d: dg.Definitions, instance: dg.DagsterInstance) -> list[str]:
    """Replay the last days as demo trading, then evaluate each replayed day (the partitions
    the day-closed sensor would launch). Returns failure lines, like the per-partition stages."""
    from factory_pipeline.cli.demo import print_replay_report
    from factory_pipeline.demo.evaluation import demo_trading_days
    from factory_pipeline.demo.replay import replay_demo
    from factory_pipeline.store import Store

    settings = default_settings()
    t0 = time.perf_counter()
    print(
        f"[demo] replay of the last {DEMO_REPLAY_DAYS} days on the local exchange ...", flush=True
    )
    report = replay_demo(settings, days=DEMO_REPLAY_DAYS)
    print_replay_report(report)
    if report.message:
        return []
    store = Store(settings.database_path)
    first = dt.datetime.fromtimestamp(report.start_ms / 1000, tz=dt.UTC).date()
    last = dt.datetime.fromtimestamp(report.end_ms / 1000, tz=dt.UTC).date()
    days = demo_trading_days(store, first, last)
    store.close()
    failures = []
    for day in days:
        try:
            _materialize(d, instance, ("demo_daily_evaluation",), partition=day.isoformat())
            print(f"      demo evaluation {day}: ok", flush=True)
        except FactoryError as exc:  # a demotion fails its blocking check: report, go on
            print(f"      demo evaluation {day}: {exc}", flush=True)
            failures.append(f"demo evaluation {day}: {exc}")
    print(f"      done in {time.perf_counter() - t0:.1f} s", flush=True)
    return failures


def backfill_research(
    definitions: dg.Definitions | None = None, instance: Any = None, *, redesign: bool = True
) -> int:
    """A full research backfill: (re)design candidates, backtest every symbol x regime partition
    in one run, assess and decide. The UI equivalent: materialize the backtests asset's
    partitions with "Materialize all" (one run by its backfill policy), then downstream."""
    d = definitions or load_definitions()
    inst = instance or _instance()
    stages = [s for s in PLAN if s.name in RESEARCH_STAGES]
    if not redesign:
        stages = [s for s in stages if s.name != "candidate systems"]
    started = time.perf_counter()
    for number, stage in enumerate(stages, start=1):
        t0 = time.perf_counter()
        print(f"[{number}/{len(stages)}] {stage.name}: {', '.join(stage.assets)} ...", flush=True)
        _materialize(d, inst, stage.assets, all_partitions=True)
        print(f"      done in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"research backfill done in {time.perf_counter() - started:.1f} s")
    from factory_pipeline.cli.status import print_decisions

    return print_decisions()


def materialize_selection(
    selection: str,
    *,
    partition: str | None = None,
    range_start: str | None = None,
    range_end: str | None = None,
    all_partitions: bool = False,
    definitions: dg.Definitions | None = None,
    instance: Any = None,
) -> int:
    d = definitions or load_definitions()
    inst = instance or _instance()
    keys = _resolve_selection(d, selection)
    if (range_start is None) != (range_end is None):
        raise ConfigError("--from and --to must be given together")
    t0 = time.perf_counter()
    _materialize(
        d,
        inst,
        keys,
        partition=partition,
        range_start=range_start,
        range_end=range_end,
        all_partitions=all_partitions,
    )
    print(f"materialized {', '.join(keys)} in {time.perf_counter() - t0:.1f} s")
    return 0


def _materialize_each_partition(
    d: dg.Definitions, instance: dg.DagsterInstance, asset_names: Sequence[str]
) -> list[str]:
    """One run per partition; failures are collected (one line each), not raised."""
    graph = d.resolve_asset_graph()
    pdef = graph.get(dg.AssetKey.from_user_string(asset_names[0])).partitions_def
    keys = pdef.get_partition_keys(dynamic_partitions_store=instance) if pdef else []
    failures = []
    for key in keys:
        try:
            _materialize(d, instance, asset_names, partition=key)
            print(f"      {key}: ok", flush=True)
        except FactoryError as exc:
            print(f"      {key}: FAILED", flush=True)
            failures.append(f"{key}: {exc}")
    return failures


def _instance() -> dg.DagsterInstance:
    dagster_home()
    _relax_sqlite_fsync()
    return dg.DagsterInstance.get()


def _relax_sqlite_fsync() -> None:
    """``PRAGMA synchronous=NORMAL`` on the SQLite instance storage of this process.

    Dagster writes each partition's events in their own SQLite transaction; with the default
    ``FULL`` every commit waits for an fsync, which made a two-year daily backfill spend minutes
    in fsync for one second of work. Dagster's SQLite stores run in WAL mode, where ``NORMAL`` is
    the documented safe setting (no corruption; a power cut can lose only the last commits).
    """
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(_relax_sqlite_fsync, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _set_pragma(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    _relax_sqlite_fsync.done = True  # type: ignore[attr-defined]


def _resolve_selection(d: dg.Definitions, selection: str) -> tuple[str, ...]:
    graph = d.resolve_asset_graph()
    known = ", ".join(sorted(k.to_user_string() for k in graph.get_all_asset_keys()))
    try:
        keys = dg.AssetSelection.from_string(selection).resolve(graph)
    except Exception as exc:
        if "no AssetsDefinition objects supply these keys" in str(exc):
            keys = set()
        else:
            raise ConfigError(f"invalid asset selection {selection!r}: {exc}") from exc
    if not keys:
        raise ConfigError(f"asset selection {selection!r} matches nothing; assets: {known}")
    return tuple(sorted(k.to_user_string() for k in keys))


def _materialize(
    d: dg.Definitions,
    instance: dg.DagsterInstance,
    asset_names: Sequence[str],
    *,
    partition: str | None = None,
    range_start: str | None = None,
    range_end: str | None = None,
    all_partitions: bool = False,
) -> None:
    graph = d.resolve_asset_graph()
    keys = [dg.AssetKey.from_user_string(name) for name in asset_names]
    partitions_defs = {graph.get(k).partitions_def for k in keys}
    if len(partitions_defs) > 1:
        raise ConfigError(
            f"assets {', '.join(asset_names)} have different partitions: materialize them separately"
        )
    pdef = partitions_defs.pop()
    tags: dict[str, str] = {}
    if pdef is not None and partition is None:
        if range_start is None and all_partitions is False:
            raise ConfigError(
                f"{', '.join(asset_names)} is partitioned: give --partition, --from/--to or "
                "--all-partitions"
            )
        if range_start is None:
            all_keys = pdef.get_partition_keys(dynamic_partitions_store=instance)
            if not all_keys:
                raise ConfigError(f"{', '.join(asset_names)} has no partitions yet")
            range_start, range_end = all_keys[0], all_keys[-1]
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: range_start,
            ASSET_PARTITION_RANGE_END_TAG: range_end,
        }
    elif pdef is None and (partition or range_start):
        raise ConfigError(f"{', '.join(asset_names)} is not partitioned: drop the partition option")
    result = dg.materialize(
        assets=[*(d.assets or []), *(d.asset_checks or [])],
        selection=keys,
        resources=d.resources,
        instance=instance,
        partition_key=partition,
        tags=tags,
        run_config=QUIET_RUN_CONFIG,
        raise_on_error=False,
    )
    if not result.success:
        raise FactoryError(_failure_line(result, asset_names))


def _failure_line(result: Any, asset_names: Sequence[str]) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            cause = err
            while cause.cause is not None:
                cause = cause.cause
            message = (cause.message or err.message).strip().splitlines()
            return f"{event.step_key} failed: {message[-1] if message else 'unknown error'}"
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data.evaluation
            if not data.passed:
                return (
                    f"blocking check {data.check_name} failed on {data.asset_key.to_user_string()}"
                )
    return f"materialization of {', '.join(asset_names)} failed"
