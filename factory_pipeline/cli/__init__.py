"""The ``factory`` command: everything the UI does, scriptable.

    factory run                         materialize the whole asset graph (what `make run` does)
    factory materialize SELECTION [--partition KEY | --from KEY --to KEY]
    factory backfill [--keep-candidates] design, backtest every partition, assess, decide
    factory status                      counts per stage and status
    factory demo replay [--days N]      replay N days of demo trading on the local exchange
    factory killswitch status|reset     the trading kill switch (reset: --actor and --reason)
    factory exchange serve [--port P]   run the local Bybit-compatible exchange in the foreground
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

    backfill = sub.add_parser(
        "backfill", help="full research backfill: candidates, all backtest partitions, decisions"
    )
    backfill.add_argument(
        "--keep-candidates",
        action="store_true",
        help="re-run backtests, robustness and decisions on the stored candidates only",
    )

    sub.add_parser("status", help="counts per stage and status")

    demo = sub.add_parser("demo", help="demo trading")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    replay = demo_sub.add_parser("replay", help="replay recent days against the local exchange")
    replay.add_argument("--days", type=int, default=3, help="days of market data to replay")

    kill = sub.add_parser("killswitch", help="show or reset the trading kill switch")
    kill.add_argument("action", choices=["status", "reset"])
    kill.add_argument("--actor", help="who resets it (required for reset)")
    kill.add_argument("--reason", help="why it is safe to trade again (required for reset)")

    exchange = sub.add_parser("exchange", help="the local Bybit-compatible exchange")
    exchange_sub = exchange.add_subparsers(dest="exchange_command", required=True)
    serve = exchange_sub.add_parser("serve", help="serve it on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--port", type=int, default=8765)

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
        if args.command == "backfill":
            from factory_pipeline.cli.pipeline import backfill_research

            return backfill_research(redesign=not args.keep_candidates)
        if args.command == "status":
            from factory_pipeline.cli.status import print_status

            return print_status()
        if args.command == "demo":
            from factory_pipeline.cli.demo import demo_replay_command

            return demo_replay_command(args.days)
        if args.command == "killswitch":
            from factory_pipeline.cli.killswitch import killswitch_command

            return killswitch_command(args.action, actor=args.actor, reason=args.reason)
        if args.command == "exchange":
            return _serve_exchange(args.port)
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


def _serve_exchange(port: int) -> int:
    """The embedded default venue as a service: prices from the market store, state persisted
    under <data_dir>/exchange, so `FACTORY_EXCHANGE=local` runs and the UI share one venue."""
    from factory_pipeline.exchange.local import serve
    from factory_pipeline.settings import default_settings
    from factory_pipeline.store import Store

    settings = default_settings()
    snapshot = settings.data_dir / "exchange" / "state.json"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    print(f"local exchange on http://127.0.0.1:{port} (state {snapshot}); Ctrl-C to stop")
    serve(
        store=Store(settings.database_path),
        snapshot=snapshot,
        timeframe=settings.base_timeframe,
        port=port,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
