"""Value types of the command-line options: every number is range-checked where it is parsed, so a bad one
is an argparse error (exit 2) naming the option and the range, never a value accepted and then dropped."""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
from collections.abc import Callable

from db.limits import MAX_STEP

_WHOLE = re.compile(r"^\s*\+?\d+\s*$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def whole(lo: int, hi: int, what: str) -> Callable[[str], int]:
    """A whole number in [lo, hi] (``1e3``, ``1.5``, ``-5`` and ``1_000`` are refused, with the range)."""

    def parse(text: str) -> int:
        if not _WHOLE.match(text) or not lo <= int(text) <= hi:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}: a whole number from {lo} to {hi}")
        return int(text)

    return parse


def number(lo: float, hi: float, what: str) -> Callable[[str], float]:
    """A finite number in [lo, hi]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not lo <= value <= hi:  # NaN fails too
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}: a number from {lo:g} to {hi:g}")
        return value

    return parse


def host(text: str) -> str:
    """An address to listen on: an IPv4/IPv6 address or a host name (``999.1.1.1`` is neither)."""
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", value) or not _HOSTNAME.match(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or a host name (e.g. 127.0.0.1, ::1, "
                                         "0.0.0.0 for every interface, or localhost)")
    return value


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are ``UsageError`` (the CLI prints them as one ``error:`` line, exit 2)
    instead of a usage block and ``SystemExit``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class UsageError(Exception):
    """A command line argparse refused."""


planned_steps = whole(1, MAX_STEP, "a planned length in steps")
port = whole(1, 65535, "a TCP port")
busy_timeout = number(0, 86_400, "a wait in seconds")
