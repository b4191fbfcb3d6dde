"""The ``factory`` command: everything the UI does, scriptable.

    factory run                         materialize the whole asset graph (what `make run` does)
    factory materialize SELECTION [--partition KEY | --from KEY --to KEY]
    factory status                      counts per stage and status
    factory bench [SUITE ...] [--json FILE] [--quick]

Errors a user can cause print one line (``error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from factory_pipeline.errors import FactoryError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="materialize the whole asset graph on the configured profile")

    mat = sub.add_parser("materialize", help="materialize a selection of assets")
    mat.add_argument("selection", help="asset selection, e.g. 'market_bars' or 'group:market'")
    mat.add_argument("--partition", help="one partition key, e.g. '2024-01-01|BTCUSDT'")
    mat.add_argument("--from", dest="range_start", help="first partition key of a range")
    mat.add_argument("--to", dest="range_end", help="last partition key of a range")
    mat.add_argument("--all-partitions", action="store_true", help="every partition, one run")

    sub.add_parser("status", help="counts per stage and status")

    bench = sub.add_parser("bench", help="run benchmark suites and print their figures")
    bench.add_argument("suites", nargs="*", help="suites to run (default: all)")
    bench.add_argument("--json", dest="json_path", help="write the figures as flat JSON here")
    bench.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from factory_pipeline.cli.pipeline import run_all

            return run_all()
        if args.command == "materialize":
            from factory_pipeline.cli.pipeline import materialize_selection

            return materialize_selection(
                args.selection,
                partition=args.partition,
                range_start=args.range_start,
                range_end=args.range_end,
                all_partitions=args.all_partitions,
            )
        if args.command == "status":
            from factory_pipeline.cli.status import print_status

            return print_status()
        if args.command == "bench":
            from factory_pipeline.cli.bench import run_benchmarks

            return run_benchmarks(args.suites, json_path=args.json_path, quick=args.quick)
    except FactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
