"""What every page loads first: the store, its runs and their stored analyses — or a message saying what
is missing and which command fixes it (then the page stops drawing, without raising)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
import streamlit as st

from analysis.results import RunAnalysis
from dashboard import data
from dashboard.text import md_text
from db import Store
from db.masking import mask_secrets
from plots.text import run_label

FIX_NOT_ANALYSED = "`entropy-dash analyse --db {url}` analyses and stores them (ingest does it too)."
FIX_NO_ENTROPY = ("it logs no policy-entropy metric. Log one (verl `actor/entropy`, TRL/OpenRLHF `entropy`) and "
                  "re-run `entropy-dash ingest …`, or name the key with `entropy_key` in the source's options; "
                  "`entropy-dash runs` lists the keys each run has.")
FIX_NO_PERFORMANCE = ("it logs no performance metric (validation accuracy or reward). Log one and re-run "
                      "`entropy-dash ingest …`, or name it with `performance_key` in the source's options.")


@dataclass
class Context:
    """The store and its runs (the runs table, and each run's analysis status from the analyses table's
    columns); the analyses themselves are read for the runs a page shows (``of``, ``fits_of``), or for every
    run by the pages that show every run (``results``, ``fits``)."""

    store: Store
    url: str
    version: tuple
    runs: pd.DataFrame
    analysed: pd.DataFrame  # data.analysed: run_id, status, fitted

    @cached_property
    def results(self) -> list[RunAnalysis]:
        """Every run's analysis (for a page that shows every run)."""
        return data.results(self.url, self.version)

    @cached_property
    def fits(self) -> dict[int, dict[str, Any]]:
        """``fit --json`` per run id of every run, health included (bounded ceilings, benchmarks, live forecast,
        the 30% backtest); read once per page run (each read of the cache is a fresh copy: 2 ms a run)."""
        return data.fit_doc(self.url, self.version)

    @cached_property
    def by_id(self) -> dict[int, RunAnalysis]:
        return {int(r.run_id): r for r in self.results}

    def ids(self, *, fitted: bool = False, shown: bool = False) -> list[int]:
        """The analysed runs' ids in run order; ``fitted``: only those with a fitted law; ``shown``: only those
        whose analysis was not skipped (they have an entropy and a performance metric)."""
        a = self.analysed
        if fitted:
            a = a[a["fitted"]]
        if shown:
            a = a[a["status"] != "skipped"]
        return [int(i) for i in a["run_id"]]

    def of(self, run_ids: Iterable[int]) -> dict[int, RunAnalysis]:
        """The analyses of ``run_ids`` only, by id (in the order given)."""
        ids = tuple(dict.fromkeys(int(i) for i in run_ids))
        got = {int(r.run_id): r for r in data.results_of(self.url, self.version, ids)} if ids else {}
        return {i: got[i] for i in ids if i in got}

    def fits_of(self, run_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """``fit --json`` of ``run_ids`` only, without health (``data.fits_of``)."""
        ids = tuple(dict.fromkeys(int(i) for i in run_ids))
        return data.fits_of(self.url, self.version, ids) if ids else {}

    def labels(self, run_ids: Iterable[int] | None = None) -> dict[int, str]:
        """Run id → its label (name and id), from the runs table; every analysed run when ``run_ids`` is None."""
        names = dict(zip(self.runs["id"].astype(int), self.runs["name"], strict=True))
        return {int(i): run_label(names[int(i)], int(i)) for i in (self.ids() if run_ids is None else run_ids)}

    def run_version(self, run_id: int) -> int:
        row = self.runs[self.runs["id"] == run_id]
        return int(row["data_version"].iloc[0]) if len(row) else 0

    def run_info(self, run_id: int) -> dict[str, Any]:
        row = self.runs[self.runs["id"] == run_id]
        return row.iloc[0].to_dict() if len(row) else {}


def load() -> Context | None:
    """The page's data, or None after an st.warning/st.info that names the fix. Reads the runs table and the
    analyses table's status columns, no run's analysis (``Context`` reads those for what the page shows)."""
    store = data.get_store()
    if store is None:
        return None
    url = data.db_url()
    try:
        version = data.version(store)
        runs = data.runs(url, version)
        analysed = data.analysed(url, version)
    except Exception as exc:  # noqa: BLE001 - an unreadable store is a message, not a traceback
        st.error(f"cannot read the store at {md_text(data.shown_url())}: {md_text(type(exc).__name__)}: "
                 f"{md_text(mask_secrets(str(exc)))}")
        return None
    if runs.empty:
        st.info(data.FIX_NO_RUNS)
        return None
    have = {int(i) for i in analysed["run_id"]}
    missing = [int(i) for i in runs["id"] if int(i) not in have]
    if missing:
        st.warning(f"{len(missing)} of {len(runs)} runs have not been analysed yet; "
                   + FIX_NOT_ANALYSED.format(url=data.shown_url()))
    if analysed.empty:
        return None
    return Context(store=store, url=url, version=version, runs=runs, analysed=analysed)


def why_unfit(result: RunAnalysis) -> str:
    """Why a run has no fitted law, and the fix."""
    reason = str(result.reason or "")
    if result.entropy_key is None or "no entropy" in reason:
        return FIX_NO_ENTROPY
    if result.performance_key is None or "no performance" in reason:
        return FIX_NO_PERFORMANCE
    if result.status == "degenerate":
        return (f"{reason}. A ceiling fitted to such a series would mislead, so none is shown"
                + ("; more evaluations (a smaller `test_freq`) fix this." if "too few" in reason else "."))
    return (f"the law could not be fitted: {reason}. The fit needs at least 3 evaluations paired with entropy "
            "and some spread in entropy; more evaluations (a smaller `test_freq`) fix most of these.")


def fitted_or_explain(ctx: Context, what: str) -> list[int]:
    """The ids of the runs with a fitted law; when there are none, say so (``what``: why the page needs one)
    and list what each run is missing."""
    fitted = ctx.ids(fitted=True)
    if not fitted:
        st.info(f"No run has a fitted law yet{what}. `entropy-dash runs` shows what each run has.")
        show_unfit(ctx.results)
    return fitted


def show_unfit(results: list[RunAnalysis]) -> None:
    """One line per run without a fit: its name (as literal text) and what to do."""
    for r in results:
        if r.law is None:
            st.warning(f"**{md_text(run_label(r.run, r.run_id))}** has no fitted law: {why_unfit(r)}")
