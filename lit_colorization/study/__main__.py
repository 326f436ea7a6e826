"""Command line of the study: ``serve`` the web app, ``report`` the fooling rate.

python -m lit_colorization.study serve --study DIR --db PATH [--host 127.0.0.1 --port 8765 --trials 10 --show-ms 1000]
python -m lit_colorization.study report --db PATH [--csv OUT] [--per-image]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lit_colorization.study import store

PAPER_FOOLING_RATE = 0.323  # Zhang et al. 2016, full method, AMT "real vs. fake" test


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def format_summary(label: str, summary: store.RateSummary) -> str:
    return (
        f"{label}: {_percent(summary.rate)} fooled "
        f"(95% CI {_percent(summary.ci_low)} to {_percent(summary.ci_high)}), n={summary.n}"
    )


def serve(args: argparse.Namespace) -> None:
    # Imported here so that `report` works without Flask (the optional study extra) installed.
    try:
        from lit_colorization.study.app import create_app
    except ModuleNotFoundError as error:
        if error.name != "flask":
            raise
        raise ValueError(
            "the study web app needs the optional 'study' extra: pip install -e '.[study]'"
        ) from None

    app = create_app(args.study, args.db, trials=args.trials, show_ms=args.show_ms)
    app.run(host=args.host, port=args.port, threaded=True)


def report(args: argparse.Namespace) -> None:
    conn = store.open_store(args.db, create=False)
    try:
        summary = store.fooling_rate(conn)
        if summary.n == 0:
            print(f"no answers recorded yet in {args.db}")
        else:
            sessions = store.session_count(conn)
            print(format_summary(f"fooling rate over {sessions} session(s)", summary))
            print(f"paper (full method): {_percent(PAPER_FOOLING_RATE)}")
        if args.per_image:
            for image_id, image_summary in store.per_image_fooling_rates(conn).items():
                print(format_summary(f"  {image_id}", image_summary))
        if args.csv:
            rows = store.export_csv(conn, args.csv)
            print(f"wrote {rows} answer(s) to {args.csv}")
    finally:
        conn.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lit_colorization.study", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the study web app")
    serve_parser.add_argument("--study", required=True, help="folder with real/ and colorized/ images")
    serve_parser.add_argument("--db", required=True, help="SQLite file for sessions and answers")
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    serve_parser.add_argument("--port", type=int, default=8765)
    serve_parser.add_argument("--trials", type=int, default=10, help="image pairs per session")
    serve_parser.add_argument("--show-ms", type=int, default=1000, help="how long each pair stays visible")
    serve_parser.set_defaults(handler=serve)

    report_parser = commands.add_parser("report", help="print the fooling rate with its 95%% interval")
    report_parser.add_argument("--db", required=True, help="SQLite file written by serve")
    report_parser.add_argument("--csv", help="also export every answer to this CSV file")
    report_parser.add_argument("--per-image", action="store_true", help="also print each image's rate")
    report_parser.set_defaults(handler=report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
