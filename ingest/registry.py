"""The source registry: every kind of source the product reads, declared once by its own module.

MLflow picks a tracking store by the scheme of its URI from a registry of store builders; this is the same
idea for our sources. Each source module ends with one ``register(SourceKind(...))`` naming its kind (the
``sources.kind`` stored with every run), how a source is built from a URI and options, what the URI is, and
its settings (``Option``: a key of ``sources.toml`` and, when it has a ``flag``, an argument of
``entropy-dash ingest <kind>``). Everything that needs to know the kinds reads them from here:

* the CLI's ``ingest`` subcommands (``add_cli_commands``, ``from_cli``),
* the scheduler's config check (``options_from_config``, ``resolve_config_uri``),
* the dashboard's "sync now" command line (``cli_args``),
* the sync-then-analyse workflow (``build``).

Adding a source is one new module that calls ``register`` (and its tests); a module outside ``ingest/`` is
registered by importing it before the CLI parses its arguments. The built-in source modules are imported
the first time a kind is looked up (``kinds``), not when this module is, and a source module imports its
readers' packages (requests, protobuf, tensorboard, wandb, MLflow) only when it reads: the ``ingest``
command line lists every kind, and a command that reads one source needs no other's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db.limits import MAX_STEP
from ingest.errors import IngestError

if TYPE_CHECKING:
    from ingest.base import Source

#: the modules of the built-in sources: each registers its kind when imported
BUILTIN_MODULES = ("ingest.mlflow_source", "ingest.wandb_cloud", "ingest.wandb_offline", "ingest.tensorboard",
                   "ingest.files")


class UnknownSourceKind(IngestError):
    """No source module registered this kind."""


# ---------------------------------------------------------------------------- value checks
def names(value: Any) -> list[str]:
    """A list of non-empty strings (experiment names, metric keys)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of names, got {value!r}")
    return list(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not -MAX_STEP <= value <= MAX_STEP:
        raise ValueError(f"must be an integer from -{MAX_STEP} to {MAX_STEP}, got {value!r}")
    return value


# ---------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Option:
    """One setting of a source kind, handed to the source in its ``options``.

    ``key`` is its name in ``sources.toml`` and in the stored options; ``check`` turns a config value into
    the option's value or raises ``ValueError("must be …")``. With a ``flag`` it is also an argument of
    ``entropy-dash ingest <kind>``: ``many`` (a list; the flag is repeated, and an empty list when it is not
    given) or ``switch`` (true when given, left out when not) or else one value of type ``type``.
    ``remembered=False``: a setting of this one sync, set as an attribute of the source and never stored
    (``--fail-fast``); such options are command-line only.
    """

    key: str
    check: Callable[[Any], Any]
    help: str = ""
    flag: str | None = None
    many: bool = False
    switch: bool = False
    type: Callable[[str], Any] = str
    metavar: str | None = None
    remembered: bool = True


#: ``--fail-fast`` of the sources of many independently read parts (files, run folders)
FAIL_FAST = Option("fail_fast", boolean, "stop at the first file (or run folder) that cannot be read; default: "
                   "skip it, read the others, then exit 2 naming it", flag="--fail-fast", switch=True,
                   remembered=False)


@dataclass(frozen=True)
class SourceKind:
    """A kind of source: its name, how it is built, what its URI is, and its options.

    ``build(uri, options)`` returns the ``ingest.base.Source``. ``uri_is_path``: the URI is a file or folder,
    made absolute (against the working directory on the command line, the config file's folder in
    ``sources.toml``). ``check_uri`` raises ``ValueError`` saying what is wrong with a URI before anything
    is read. ``alternative``: ``(flag, kind)`` — ``entropy-dash ingest <this kind> <flag> URI`` is another
    way to name a source of ``kind`` (``ingest wandb --offline DIR``), kept for the stable command line.
    """

    kind: str
    build: Callable[[str, Mapping[str, Any]], Source]
    help: str
    uri_help: str
    uri_metavar: str = "URI"
    uri_is_path: bool = False
    check_uri: Callable[[str], None] | None = None
    options: tuple[Option, ...] = ()
    alternative: tuple[str, str] | None = None

    @property
    def config_keys(self) -> frozenset[str]:
        """The keys of a ``[[source]]`` table of this kind, beyond the ones every kind has."""
        return frozenset(o.key for o in self.options if o.remembered)


@dataclass
class _Registry:
    kinds: dict[str, SourceKind] = field(default_factory=dict)
    loaded: bool = False


_registry = _Registry()


def register(kind: SourceKind) -> SourceKind:
    """Add a kind; a kind already registered by another declaration is an error (kinds are unique).
    Registering the same declaration again (a module imported twice) changes nothing."""
    current = _registry.kinds.get(kind.kind)
    if current is not None and current != kind:
        raise ValueError(f"source kind {kind.kind!r} is registered twice")
    _registry.kinds[kind.kind] = kind
    return kind


def unregister(kind: str) -> None:
    """Remove a kind (for tests that register a source of their own)."""
    _registry.kinds.pop(kind, None)


def kinds() -> dict[str, SourceKind]:
    """Every registered kind by name: the built-in ones in ``BUILTIN_MODULES`` order, then the others in
    registration order."""
    if not _registry.loaded:
        for module in BUILTIN_MODULES:
            import_module(module)
        _registry.loaded = True

    def rank(spec: SourceKind) -> int:
        module = getattr(spec.build, "__module__", "")
        return BUILTIN_MODULES.index(module) if module in BUILTIN_MODULES else len(BUILTIN_MODULES)

    return {spec.kind: spec for spec in sorted(_registry.kinds.values(), key=rank)}


def get(kind: str) -> SourceKind:
    found = kinds().get(kind)
    if found is None:
        raise UnknownSourceKind(f"unknown source kind {kind!r}; one of {', '.join(kinds())}")
    return found


def build(kind: str, uri: str, options: Mapping[str, Any] | None = None) -> Source:
    """The source of ``kind`` at ``uri``: the remembered options go into its ``options``, the others
    (``remembered=False``) are set as its attributes."""
    spec = get(kind)
    opts = dict(options or {})
    once = {o.key: opts.pop(o.key) for o in spec.options if not o.remembered and o.key in opts}
    source = spec.build(uri, opts)
    for key, value in once.items():
        setattr(source, key, value)
    return source


def absolute_path(path: str, base: Path | None = None) -> str:
    """``path`` made absolute (``~`` expanded; relative to ``base`` or the working directory)."""
    try:
        p = Path(path).expanduser()
        return str(((base / p) if base is not None else p).resolve())
    except (RuntimeError, OSError) as exc:  # Python 3.11: RuntimeError on a symlink loop
        why = "a symlink loop" if isinstance(exc, RuntimeError) else (exc.strerror or str(exc))
        raise IngestError(f"{path}: cannot resolve the path ({why})") from None


# ---------------------------------------------------------------------------- command line
def add_cli_commands(subparsers: Any, parents: Iterable[argparse.ArgumentParser]) -> None:
    """One ``entropy-dash ingest <kind>`` subcommand per registered kind."""
    parents = list(parents)
    for spec in kinds().values():
        s = subparsers.add_parser(spec.kind, parents=parents, help=spec.help)
        s.add_argument("uri", metavar=spec.uri_metavar, nargs="?" if spec.alternative else None, help=spec.uri_help)
        if spec.alternative is not None:
            flag, other = spec.alternative
            s.add_argument(flag, dest="alternative_uri", metavar=get(other).uri_metavar,
                           help=f"instead of {spec.uri_metavar}: {get(other).help}")
        for opt in spec.options:
            if opt.flag is None:
                continue
            if opt.switch:
                s.add_argument(opt.flag, dest=f"opt_{opt.key}", action="store_true", help=opt.help)
            else:
                s.add_argument(opt.flag, dest=f"opt_{opt.key}", action="append" if opt.many else "store",
                               type=opt.type, metavar=opt.metavar, help=opt.help)
        s.set_defaults(source_kind=spec.kind)


def from_cli(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """``(kind, uri, options)`` from the parsed arguments of ``entropy-dash ingest <kind>``; raises
    ``ValueError`` saying what is wrong."""
    spec = get(args.source_kind)
    uri = args.uri
    if spec.alternative is not None:
        flag, other = spec.alternative
        given = getattr(args, "alternative_uri", None)
        if bool(uri) == bool(given):
            raise ValueError(f"ingest {spec.kind} takes {spec.uri_metavar} or {flag} "
                             f"{get(other).uri_metavar} (one of the two)")
        if given:
            spec, uri = get(other), given
    options: dict[str, Any] = {}
    for opt in spec.options:
        if opt.flag is None:
            continue
        value = getattr(args, f"opt_{opt.key}", None)
        if opt.many:
            options[opt.key] = list(value or [])
        elif opt.switch:
            if value:
                options[opt.key] = True
        elif value is not None:
            options[opt.key] = value
    if spec.check_uri is not None:
        spec.check_uri(uri)
    return spec.kind, absolute_path(uri) if spec.uri_is_path else uri, options


def cli_args(kind: str, uri: str, options: Mapping[str, Any] | None) -> list[str]:
    """The arguments of ``entropy-dash`` that sync a stored source again, with the options the command line
    can express (the others are in the store already and stay)."""
    spec = get(kind)
    opts = dict(options or {})
    out = ["ingest", spec.kind, uri]
    for opt in spec.options:
        if opt.flag is None or not opt.remembered or opt.key not in opts:
            continue
        value = opts[opt.key]
        if opt.many:
            for v in value or []:
                out += [opt.flag, str(v)]
        elif opt.switch:
            if value:
                out.append(opt.flag)
        else:
            out += [opt.flag, str(value)]
    return out


# ---------------------------------------------------------------------------- config files
def resolve_config_uri(kind: str, uri: str, base: Path) -> str:
    """A ``uri`` of ``sources.toml`` checked (``ValueError``) and, for a path, made absolute against the
    config's folder ``base``."""
    spec = get(kind)
    if spec.check_uri is not None:
        spec.check_uri(uri)
    return absolute_path(uri, base) if spec.uri_is_path else uri


def options_from_config(kind: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a ``[[source]]`` table of ``kind`` (its kind's keys only, the others are left to the
    caller), checked: a bad value raises ``OptionError`` naming the key."""
    out: dict[str, Any] = {}
    for opt in get(kind).options:
        if opt.remembered and opt.key in table:
            try:
                out[opt.key] = opt.check(table[opt.key])
            except ValueError as exc:
                raise OptionError(opt.key, str(exc)) from None
    return out


class OptionError(ValueError):
    """A bad value of option ``key`` in a config file."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(f"{key}: {what}")
        self.key, self.what = key, what
