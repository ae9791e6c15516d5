"""The analysis of one run as frozen dataclasses, each dumping and loading itself (``to_dict``/``from_dict``)
the way lmfit's ``ModelResult`` does: ``RunAnalysis.from_dict(d).to_dict() == d`` for every result
``analysis.run.analyse_run`` (or a failed analysis, ``analysis.pipeline``) makes, so a stored analysis
(``analyses.result``, kind ``summary``) loads back exactly.

The parts every reader relies on are typed fields (law, benchmarks, stage, collapse, forecast, backtests,
status and reason); the other keys of a part ride in its ``extra`` mapping, as stored. A part that could not
be made is a ``Failure`` (the ``{"error", "cause"}`` of ``analysis.run``), told apart by its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from analysis.errors import AnalysisError

T = TypeVar("T", bound="Part")
_LAYOUT: dict[type, tuple[dict[str, str], frozenset[str]]] = {}


@dataclass(frozen=True)
class Failure:
    """A part of the analysis that could not be made, and why (``cause``: a short code)."""

    error: str
    cause: str

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "cause": self.cause}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Failure:
        return cls(str(d["error"]), str(d["cause"]))


def is_failure(d: Any) -> bool:
    """Whether a stored part is a failure (exactly ``{"error", "cause"}``)."""
    return isinstance(d, Mapping) and set(d) == {"error", "cause"}


@dataclass(frozen=True, kw_only=True)
class Part:
    """Typed fields (the keys every reader uses) plus ``extra``: the part's other keys, as stored. A list
    field is held as a tuple and dumped as a list again."""

    extra: Mapping[str, Any] = field(default_factory=dict)
    #: typed field → key in the dict, where they differ
    KEYS: ClassVar[Mapping[str, str]] = {}
    #: typed fields that are parts themselves (loaded by ``_load``, dumped by ``_dump``)
    NESTED: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

    @classmethod
    def _layout(cls) -> tuple[dict[str, str], frozenset[str]]:
        """Typed field → its key in the dict, and the keys used (once per class: results load by the thousand)."""
        layout = _LAYOUT.get(cls)
        if layout is None:
            keys = {n: cls.KEYS.get(n, n) for n in cls._names()}
            layout = _LAYOUT[cls] = (keys, frozenset(keys.values()))
        return layout

    @classmethod
    def _load(cls, name: str, value: Any) -> Any:
        """A field of ``NESTED`` from its stored value."""
        return value

    def _dump(self, name: str, value: Any) -> Any:
        """A field of ``NESTED`` as stored."""
        return value

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        keys, used = cls._layout()
        try:
            kw = {n: d[k] for n, k in keys.items()}
        except KeyError:
            missing = [k for k in keys.values() if k not in d]
            raise AnalysisError(f"{cls.__name__}: the stored result has no {', '.join(missing)} "
                                f"(run {d.get('run_id', '?')}, keys: {', '.join(map(str, d))})") from None
        for n, v in kw.items():
            if n in cls.NESTED:
                kw[n] = cls._load(n, v)
            elif type(v) is list:
                kw[n] = tuple(v)
        return cls(**kw, extra={k: v for k, v in d.items() if k not in used})

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for n, k in self._layout()[0].items():
            v = getattr(self, n)
            out[k] = self._dump(n, v) if n in self.NESTED else list(v) if type(v) is tuple else v
        out.update(self.extra)
        return out


@dataclass(frozen=True, kw_only=True)
class Law(Part):
    """The law R = −a·e^H + b with its ceiling b − a bounded to the metric's range (``analysis.run.bounded_law``)."""

    a: float
    b: float
    a_se: float | None
    b_se: float | None
    cov_ab: float | None
    ceiling: float
    ceiling_lo: float | None
    ceiling_hi: float | None
    ceiling_ci: tuple[float | None, float | None]
    ceiling_raw: float
    r2: float | None
    rmse: float | None
    n: int
    flags: tuple[str, ...]
    weak: str | None


@dataclass(frozen=True, kw_only=True)
class Benchmark(Part):
    """One benchmark of the run: its status and reason, its law when it could be fitted."""

    key: str
    benchmark: str | None
    status: str
    reason: str | None
    law: Law | None
    n: int

    NESTED: ClassVar[frozenset[str]] = frozenset({"law"})

    @classmethod
    def _load(cls, name: str, value: Any) -> Any:
        return None if value is None else Law.from_dict(value)

    def _dump(self, name: str, value: Any) -> Any:
        return None if value is None else value.to_dict()


@dataclass(frozen=True, kw_only=True)
class Stage(Part):
    """Where the rising stage ends (``models.stages``)."""

    step: int | None
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class Collapse(Part):
    """The entropy-collapse verdict (``models.collapse``)."""

    verdict: str
    projected_floor_step: float | None
    message: str


@dataclass(frozen=True, kw_only=True)
class Forecast(Part):
    """Every method's forecast of the score at the planned end, from what was seen up to ``from_step``."""

    horizon_step: int
    from_step: float
    fraction_done: float
    methods: Mapping[str, Mapping[str, Any]]
    weak_law: str | None


@dataclass(frozen=True, kw_only=True)
class Backtest(Forecast):
    """A finished run replayed from a cut at ``cutoff`` of its planned length, beside what happened."""

    cutoff: float
    cutoff_step: float
    observed_final: float
    final_steps: tuple[int, ...]


def _part(cls: type[T], d: Mapping[str, Any] | None) -> T | Failure | None:
    if d is None:
        return None
    return Failure.from_dict(d) if is_failure(d) else cls.from_dict(d)


@dataclass(frozen=True, kw_only=True)
class RunAnalysis(Part):
    """Everything computed for one run (``analysis.run``). ``stage`` and ``collapse`` are None when the run
    was not analysed that far (skipped, failed): the stored result has no such key then. ``forecast`` is the
    live forecast (key ``live``); ``backtests`` the replay per grid fraction ("0.3")."""

    KEYS: ClassVar[Mapping[str, str]] = {"forecast": "live"}
    NESTED: ClassVar[frozenset[str]] = frozenset({"law", "benchmarks", "forecast", "backtests"})

    schema_version: int
    analysis_version: int
    run_id: int
    run: str
    status: str
    reason: str | None
    law: Law | None
    benchmarks: tuple[Benchmark, ...]
    forecast: Forecast | Failure | None
    backtests: Mapping[str, Backtest | Failure]
    stage: Stage | Failure | None = None
    collapse: Collapse | Failure | None = None

    @classmethod
    def _names(cls) -> list[str]:
        return [n for n in super()._names() if n not in ("stage", "collapse")]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunAnalysis:
        base = super().from_dict({k: v for k, v in d.items() if k not in ("stage", "collapse")})
        return replace(base, stage=_part(Stage, d["stage"]) if "stage" in d else None,
                       collapse=_part(Collapse, d["collapse"]) if "collapse" in d else None)

    @classmethod
    def _load(cls, name: str, value: Any) -> Any:
        if name == "law":
            return None if value is None else Law.from_dict(value)
        if name == "benchmarks":
            return tuple(Benchmark.from_dict(b) for b in value)
        if name == "forecast":
            return _part(Forecast, value)
        return {f: _part(Backtest, bt) for f, bt in value.items()}  # backtests

    def _dump(self, name: str, value: Any) -> Any:
        if name == "benchmarks":
            return [b.to_dict() for b in value]
        if name == "backtests":
            return {f: bt.to_dict() for f, bt in value.items()}
        return None if value is None else value.to_dict()  # law, forecast

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for name in ("stage", "collapse"):
            part = getattr(self, name)
            if part is not None:
                out[name] = part.to_dict()
        return out
