"""The run selection shared by every page: in session state and in the URL (``?runs=3,7,12``).

The canonical selection lives in ``st.session_state[SELECTION]`` (not a widget key, so it survives page
switches) and is mirrored into the query parameter ``runs`` so a copied URL reproduces the view. Pages read
it with ``selection`` and render a picker with ``run_picker``; the Ceiling page's single run is ``?run=ID``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import streamlit as st

from dashboard.text import md_text

SELECTION = "selected_runs"
QP_RUNS = "runs"
QP_RUN = "run"
DEFAULT_MAX = 8  # with nothing chosen yet, pages show the first few runs


MAX_ID_DIGITS = 18  # run ids are 64-bit integers
MAX_IDS = 1000
MAX_QUERY_CHARS = 20_000


def parse_ids(text: str | None, param: str = QP_RUNS) -> list[int]:
    """``"3,7, 12"`` → [3, 7, 12]; what is not a run id is left out and named in a short warning on the page
    (never an error: ``?runs=1,2,<5000 digits>`` is a URL anyone can type)."""
    ids, bad = checked_ids(text)
    if bad:
        st.warning(f"Ignored in the address (`?{param}=`): {md_text(bad)}. Run ids are whole numbers (at most "
                   f"{MAX_ID_DIGITS} digits, {MAX_IDS} of them), separated by commas.")
    return ids


def checked_ids(text: str | None) -> tuple[list[int], str]:
    """(the run ids in ``text``, a short description of what was not one — empty when all were)."""
    raw = str(text or "")
    parts = list(dict.fromkeys(p.strip() for p in raw[:MAX_QUERY_CHARS].split(",") if p.strip()))
    out: list[int] = []
    bad: list[str] = []
    for part in parts:
        if part.isascii() and part.isdigit() and len(part) <= MAX_ID_DIGITS and len(out) < MAX_IDS:
            out.append(int(part))
        else:
            bad.append(part if len(part) <= 20 else f"{part[:12]}… ({len(part)} characters)")
    if len(raw) > MAX_QUERY_CHARS:
        bad.append(f"everything after the first {MAX_QUERY_CHARS} characters")
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return list(dict.fromkeys(out)), shown


def format_ids(ids: Iterable[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


def selection(available: Sequence[int]) -> list[int]:
    """The selected run ids among ``available`` (session state, else the URL), in selection order.

    An empty result means nothing was chosen yet (or none of the chosen runs exists any more).
    """
    avail = {int(i) for i in available}
    if SELECTION in st.session_state:
        chosen = list(st.session_state[SELECTION])
    else:
        chosen = parse_ids(st.query_params.get(QP_RUNS))
        st.session_state[SELECTION] = chosen
    return [i for i in chosen if i in avail]


def set_selection(ids: Iterable[int]) -> None:
    ids = list(dict.fromkeys(int(i) for i in ids))
    st.session_state[SELECTION] = ids
    write_query(ids)


def write_query(ids: Sequence[int]) -> None:
    """Mirror the selection into the URL (removed when empty)."""
    if ids:
        if st.query_params.get(QP_RUNS) != format_ids(ids):
            st.query_params[QP_RUNS] = format_ids(ids)
    elif QP_RUNS in st.query_params:
        del st.query_params[QP_RUNS]


def selection_or_default(available: Sequence[int]) -> tuple[list[int], bool]:
    """The selection, or the first ``DEFAULT_MAX`` runs when none is chosen; the flag says which."""
    chosen = selection(available)
    if chosen:
        write_query(chosen)
        return chosen, False
    return [int(i) for i in list(available)[:DEFAULT_MAX]], True


def run_picker(labels: Mapping[int, str], page: str, *, label: str = "Runs") -> list[int]:
    """A multiselect bound to the shared selection (changing it changes the selection on every page)."""
    key = f"_pick_{page}"
    current, _ = selection_or_default(list(labels))
    st.session_state[key] = [i for i in current if i in labels]

    def changed() -> None:
        set_selection(st.session_state[key])

    return st.multiselect(label, list(labels), format_func=lambda i: labels[i], key=key, on_change=changed)


def single_run(options: Sequence[int], labels: Mapping[int, str], page: str, *, label: str = "Run") -> int:
    """A selectbox for one run, remembered in session state and ``?run=ID`` (default: the first selected
    run, else the first option)."""
    key, canon = f"_one_{page}", f"one_run_{page}"
    opts = [int(i) for i in options]
    if st.session_state.get(canon) not in opts:
        wanted = parse_ids(st.query_params.get(QP_RUN), QP_RUN)
        st.session_state[canon] = next((i for i in wanted + selection(opts) if i in opts), opts[0])
    st.session_state[key] = st.session_state[canon]

    def changed() -> None:
        st.session_state[canon] = st.session_state[key]

    run_id = int(st.selectbox(label, opts, format_func=lambda i: labels[i], key=key, on_change=changed))
    if st.query_params.get(QP_RUN) != str(run_id):
        st.query_params[QP_RUN] = str(run_id)
    return run_id
