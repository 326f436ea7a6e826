"""``make dashboard``: the project's W&B report, built as code (``transfer/dashboard.py``).

    python -m transfer.cli.dashboard [--project P] [--entity E] [--models alexnet,eccv16] [--results PATH] [--out DIR]

Its probe and VOC sections are one protocol and one dataset each: the paper's datasets and those the results
store's rows name. Online (a W&B login, ``WANDB_MODE`` not offline) it saves the report to the project and prints
its URL; that needs the optional ``dashboard`` extra (``pip install -e '.[dashboard]'``). Offline it needs nothing
more: it lists the panels it would create with the keys each reads. Either way it writes into ``--out``
(default ``results/dashboard/``) ``panels.txt`` and ``panels.json`` (that list) and, when the results store
exists, ``make compare``'s ``comparison.txt`` and ``linear_probe.png``: the transfer numbers beside the paper's.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from lit_colorization.cli.common import run_cli
from lit_colorization.config.schema import LoggerConfig
from lit_colorization.store.atomic import write_text
from lit_colorization.store.results import DEFAULT_RESULTS_PATH

OFFLINE_MODES = ("offline", "dryrun", "disabled")
TITLE = "lit-colorization: pretraining and transfer"


def online() -> bool:
    """A W&B login is configured and ``WANDB_MODE`` does not keep W&B offline (no network call)."""
    from lit_colorization.store.loggers import wandb_logged_in

    return wandb_logged_in() and os.environ.get("WANDB_MODE") not in OFFLINE_MODES


def dashboard(
    project: str, entity: str | None, models: list[str] | None, results: Path, out: Path, title: str
) -> None:
    from lit_colorization.store.results import read_results
    from transfer.compare import compare
    from transfer.dashboard import as_rows, build_report, dashboard_panels, datasets_in_results, describe

    # Sections for the paper's datasets and for every dataset the results store names.
    datasets = datasets_in_results(read_results(results).rows) if results.is_file() else None
    panels = dashboard_panels(models, datasets)
    listing = describe(panels)
    write_text(out / "panels.txt", "\n".join(listing) + "\n")
    write_text(out / "panels.json", json.dumps(as_rows(panels), indent=1) + "\n")
    if results.is_file():
        comparison = compare(results, out / "linear_probe.png")
        write_text(out / "comparison.txt", comparison)
        comparison_note = f"{out / 'comparison.txt'} and {out / 'linear_probe.png'}"
    else:
        comparison_note = f"no comparison: no results store at {results} yet"
    if not online():
        print(
            f"W&B offline (no login, or WANDB_MODE offline): the report's {len(panels)} panels, not created:"
        )
        print("\n".join(listing))
        print(f"\nwrote {out / 'panels.txt'}, {out / 'panels.json'}; {comparison_note}")
        return
    report = build_report(panels, project, entity, title)
    try:
        report.save()
    except Exception as error:  # W&B raises many types for a refused or failed request
        reason = " ".join(str(error).split())[:300]
        raise ValueError(
            f"W&B: could not save the report to project {project!r} ({type(error).__name__}: {reason}); "
            f"the panel list is in {out / 'panels.txt'}"
        ) from None
    print(f"W&B report with {len(panels)} panels: {report.url}")
    print(f"wrote {out / 'panels.txt'}, {out / 'panels.json'}; {comparison_note}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The project's W&B report, built as code")
    parser.add_argument("--project", default=LoggerConfig().project, help="W&B project (default: the runs')")
    parser.add_argument("--entity", default=None, help="W&B entity (default: your default entity)")
    parser.add_argument(
        "--models", default=None, help="networks of the per-network sections, comma-separated (default: all)"
    )
    parser.add_argument("--results", default=str(DEFAULT_RESULTS_PATH), help="the results store (.jsonl)")
    parser.add_argument(
        "--out", default=None, help="folder for the offline files (default: results/dashboard)"
    )
    parser.add_argument("--title", default=TITLE)
    args = parser.parse_args(argv)
    models = [name.strip() for name in args.models.split(",") if name.strip()] if args.models else None
    results = Path(args.results)
    out = Path(args.out) if args.out else results.parent / "dashboard"
    run_cli(lambda: dashboard(args.project, args.entity, models, results, out, args.title))


if __name__ == "__main__":
    main()
