"""Credentials of a tracking-server URL: used to connect, never shown or stored.

A source's ``uri`` is what is shown, logged and stored: its password masked (``http://user:***@host``). The
URL it connects with carries the real password, taken from the URL given at ingest time or, when that URL's
password is ``***`` (a stored URI, e.g. when the dashboard's "sync now" runs an ingest again), from
``MLFLOW_TRACKING_PASSWORD``. ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` and ``MLFLOW_TRACKING_TOKEN`` are
honoured as MLflow itself does.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from db.masking import MASK, mask_url, url_password

#: the option that carries a password taken from the URL to a retry of the same source (never stored:
#: ``ingest.sync`` drops options whose name says password/token/secret)
PASSWORD_OPTION = "password"


def split_credentials(uri: str, options: dict[str, Any]) -> tuple[str, str]:
    """``(shown, connect)``: the URI with its password masked, and the one to connect with."""
    password = url_password(uri)
    if password is not None:
        options.setdefault(PASSWORD_OPTION, password)
        return mask_url(uri), uri
    shown = mask_url(uri)
    if f":{MASK}@" not in shown:
        return shown, uri
    password = options.get(PASSWORD_OPTION) or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    secret = f":{quote(str(password), safe='')}@" if password else "@"
    return shown, shown.replace(f":{MASK}@", secret, 1)
