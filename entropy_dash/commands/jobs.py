"""`entropy-dash report` and `entropy-dash schedule`."""

from __future__ import annotations

import argparse

from entropy_dash.commands.output import open_store


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from db.limits import inert
    from reports.writer import write_report

    store = open_store(args, create=False)
    out = Path(args.out)
    made = [p for p in (out, *out.parents) if not p.exists()]  # the folders this report would create
    try:
        written = write_report(store, args.out, args.format.split(","), experiments=args.experiment,
                               runs=args.run, png=args.png, sections=args.sections)
    except BaseException:  # a --run that matches nothing (or any failure) leaves no empty folder behind
        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    for kind, path in written.items():
        print(inert(f"{kind}: {path}"))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from entropy_dash import scheduler

    config = scheduler.load_config(args.config, require_trigger=not args.once)
    return scheduler.run(config, db=args.db, once=args.once)
