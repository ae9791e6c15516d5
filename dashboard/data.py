"""Cached access to the store for the pages.

The store is opened once per process (``st.cache_resource``); query results are cached with
``st.cache_data`` keyed on the store's data version, so a page reload does not re-query while an ingest
that adds points or re-analyses runs invalidates them at once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from db import Store, resolve_db_url
from entropy_dash.errors import EntropyDashError


def db_url() -> str:
    return resolve_db_url(None)


@st.cache_resource(show_spinner=False)
def _open(url: str) -> Store:
    return Store.open(url, create=False)


def get_store() -> Store | None:
    """The store, or None after telling the user what is missing and which command fixes it."""
    url = db_url()
    try:
        return _open(url)
    except EntropyDashError as exc:
        st.warning(f"{exc}\n\nCreate one with `entropy-dash init --db {url}` and fill it with "
                   "`entropy-dash ingest …`, or try `entropy-dash demo`.")
        return None


def version(store: Store) -> tuple:
    return store.data_version()


@st.cache_data(show_spinner=False, max_entries=8)
def results(url: str, version: tuple) -> list[dict[str, Any]]:
    from entropy_dash.analysis import load_results

    return load_results(_open(url))


@st.cache_data(show_spinner=False, max_entries=8)
def runs(url: str, version: tuple) -> pd.DataFrame:
    return _open(url).runs_frame()


@st.cache_data(show_spinner=False, max_entries=32)
def series(url: str, version: tuple, run_ids: tuple[int, ...], keys: tuple[str, ...]) -> pd.DataFrame:
    return _open(url).series(run_ids, keys)
