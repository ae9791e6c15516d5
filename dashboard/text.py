"""User strings (run names, tags, keys) made safe for the two places that would interpret them.

* Plotly renders a subset of HTML in trace names, legend titles, annotations and hover text:
  ``plots.text.plotly_text`` (shared with the reports).
* Streamlit markdown (st.info/st.warning/st.caption/st.markdown bodies) would format ``*a*`` or ``[x](y)``:
  ``md_text`` backslash-escapes every ASCII punctuation character CommonMark lets one escape.

Tables (st.dataframe), st.text, st.code and widget labels/options show strings literally already.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>&$:\"'=])")


def md_text(value: Any) -> str:
    """``value`` as Markdown that displays literally (no formatting, links or HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", str(value)).replace("\n", " ")


def step_list(steps: Sequence[int], most: int = 6) -> str:
    """``steps`` as a short list: all of them up to ``most``, else the first few, an ellipsis and the last."""
    steps = [int(s) for s in steps]
    if len(steps) <= most:
        return ", ".join(map(str, steps))
    return ", ".join(map(str, steps[:most - 2])) + f", …, {steps[-1]}"
