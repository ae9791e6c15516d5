"""`entropy-dash report` and `entropy-dash schedule`."""

from __future__ import annotations

import argparse

from entropy_dash.commands.output import open_store


def cmd_report(args: argparse.Namespace) -> int:
    from db.limits import inert
    from reports.writer import write_report

    written = write_report(open_store(args, create=False), args.out, args.format.split(","),
                           experiments=args.experiment, runs=args.run, png=args.png)
    for kind, path in written.items():
        print(inert(f"{kind}: {path}"))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from entropy_dash import scheduler

    config = scheduler.load_config(args.config, require_trigger=not args.once)
    return scheduler.run(config, db=args.db, once=args.once)
