"""The analysis of one run as frozen dataclasses, each dumping and loading itself (``to_dict``/``from_dict``)
the way lmfit's ``ModelResult`` does: ``RunAnalysis.from_dict(d).to_dict() == d`` — same keys, same order, so
the same JSON — for every result ``analysis.run.analyse_run`` (or a failed analysis, ``analysis.pipeline``)
makes, so a stored analysis (``analyses.result``, kind ``summary``) loads back exactly. ``analysis.pipeline``
hands readers these objects: pages, payloads and reports read attributes.

Every key a reader uses is a typed field; a key that only some results hold (a skipped run has no stage, a
failed one no state) is a field of ``OPTIONAL``, None when absent and left out of ``to_dict`` again. The other
keys of a part ride in its ``extra`` mapping, as stored. A part that could not be made is a ``Failure`` (the
``{"error", "cause"}`` of ``analysis.run``), told apart by its type. What models made and readers only pass on
(a metric range, a warm-up, a degenerate status, health findings) stays the mapping it was stored as.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from operator import itemgetter
from typing import Any, ClassVar, TypeVar

from analysis.errors import AnalysisError

T = TypeVar("T", bound="Part")


@dataclass(frozen=True)
class _Layout:
    """A part class's fields as dict keys: required and optional field → key, every key of a field, the
    required fields' names and a getter of their values, the fields held as tuples (stored as lists)."""

    required: dict[str, str]
    optional: dict[str, str]
    used: frozenset[str]
    names: tuple[str, ...]
    get: itemgetter
    tuples: tuple[str, ...]


_LAYOUT: dict[type, _Layout] = {}
#: each key order seen, held once: thousands of parts share a few orders (less memory, smaller pickles)
_ORDERS: dict[tuple[str, ...], tuple[str, ...]] = {}


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


def _is_failure(d: Any) -> bool:
    """Whether a stored part is a failure (exactly ``{"error", "cause"}``)."""
    return isinstance(d, Mapping) and set(d) == {"error", "cause"}


@dataclass(frozen=True, kw_only=True)
class Part:
    """Typed fields (the keys every reader uses) plus ``extra``: the part's other keys, as stored. A list
    field is held as a tuple and dumped as a list again; ``order`` is the stored key order, kept for
    ``to_dict``."""

    extra: Mapping[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)
    #: typed field → key in the dict, where they differ
    KEYS: ClassVar[Mapping[str, str]] = {}
    #: typed fields that are parts themselves (loaded by ``_load``, dumped by ``_dump``)
    NESTED: ClassVar[frozenset[str]] = frozenset()
    #: typed fields whose key some results do not hold (None then; absent from ``to_dict`` again)
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _layout(cls) -> _Layout:
        """How the class maps to a dict, worked out once per class (results load by the thousand)."""
        layout = _LAYOUT.get(cls)
        if layout is None:
            own = [f for f in fields(cls) if f.name not in ("extra", "order")]
            keys = {f.name: cls.KEYS.get(f.name, f.name) for f in own}
            required = {n: k for n, k in keys.items() if n not in cls.OPTIONAL}
            layout = _LAYOUT[cls] = _Layout(
                required=required, optional={n: k for n, k in keys.items() if n in cls.OPTIONAL},
                used=frozenset(keys.values()), names=tuple(required), get=itemgetter(*required.values()),
                tuples=tuple(f.name for f in own if str(f.type).startswith("tuple") and f.name not in cls.NESTED))
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
        layout = cls._layout()
        try:
            values = layout.get(d)
        except KeyError:
            missing = [k for k in layout.required.values() if k not in d]
            raise AnalysisError(f"{cls.__name__}: the stored result has no {', '.join(missing)} "
                                f"(run {d.get('run_id', '?')}, keys: {', '.join(map(str, d))})") from None
        state = dict(zip(layout.names, values if len(layout.names) > 1 else (values,), strict=True))
        for n, k in layout.optional.items():
            state[n] = d.get(k)  # None when absent, as the field's default
        for n in layout.tuples:
            if type(state[n]) is list:
                state[n] = tuple(state[n])
        for n in cls.NESTED:
            state[n] = cls._load(n, state[n])
        order = tuple(d)
        state["extra"] = {k: v for k, v in d.items() if k not in layout.used}
        state["order"] = _ORDERS.setdefault(order, order)
        # every field is set here, so the frozen __init__ (one object.__setattr__ per field) is skipped, as
        # pickle does: a third of the load time of a run's analysis
        obj = object.__new__(cls)
        obj.__dict__.update(state)
        return obj

    def to_dict(self) -> dict[str, Any]:
        layout = self._layout()
        stored = set(self.order)
        out = {}
        for names, always in ((layout.required, True), (layout.optional, False)):
            for n, k in names.items():
                v = getattr(self, n)
                if always or k in stored or v is not None:
                    out[k] = self._dump(n, v) if n in self.NESTED else list(v) if type(v) is tuple else v
        out.update(self.extra)
        if not self.order:
            return out
        ordered = {k: out.pop(k) for k in self.order if k in out}
        ordered.update(out)  # a field set after loading (dataclasses.replace) comes last
        return ordered


@dataclass(frozen=True, kw_only=True)
class Law(Part):
    """The law R = −a·e^H + b with its ceiling b − a bounded to the metric's range (``analysis.run.bounded_law``);
    the unbounded values are the ``_raw`` ones."""

    a: float
    b: float
    a_se: float | None
    b_se: float | None
    cov_ab: float | None
    ceiling: float
    ceiling_se: float | None
    ceiling_lo: float | None
    ceiling_hi: float | None
    ceiling_ci: tuple[float | None, float | None]
    ceiling_raw: float
    ceiling_lo_raw: float | None
    ceiling_hi_raw: float | None
    r2: float | None
    rmse: float | None
    n: int
    h_min: float | None
    h_max: float | None
    loss: str | None
    n_excluded: int | None
    flags: tuple[str, ...]
    weak: str | None
    range: Mapping[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class Benchmark(Part):
    """One benchmark of the run: its status and reason, its law when it could be fitted, its levels."""

    key: str
    benchmark: str | None
    status: str
    reason: str | None
    law: Law | None
    n: int
    range: Mapping[str, Any] | None
    excluded_steps: tuple[int, ...]
    best: float | None
    last: float | None
    first: float | None

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
    range: tuple[int, int] | None
    clear: bool
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class Collapse(Part):
    """The entropy-collapse verdict (``models.collapse``)."""

    verdict: str
    alarm: bool
    projected_floor_step: float | None
    message: str
    h_start: float | None
    h_now: float | None
    floor: float | None
    decay_kind: str | None


@dataclass(frozen=True, kw_only=True)
class Forecast(Part):
    """Every method's forecast of the score at the planned end, from what was seen up to ``from_step``, with
    the features and level the cross-run model reads (``analysis.forecasting``)."""

    horizon_step: int
    from_step: float
    fraction_done: float
    methods: Mapping[str, Mapping[str, Any]]
    weak_law: str | None
    failed: Mapping[str, str]
    features: Mapping[str, Any]
    level: float
    noise_sd: float | None
    n_evaluations: int
    warmup_steps: tuple[int, ...]
    entropy_at_target: float | None


@dataclass(frozen=True, kw_only=True)
class Backtest(Forecast):
    """A finished run replayed from a cut at ``cutoff`` of its planned length, beside what happened."""

    cutoff: float
    cutoff_step: float
    observed_final: float
    final_steps: tuple[int, ...]


def part(cls: type[T], d: Mapping[str, Any] | None) -> T | Failure | None:
    """A stored part (None, a failure or a ``cls``) loaded."""
    if d is None:
        return None
    return Failure.from_dict(d) if _is_failure(d) else cls.from_dict(d)


@dataclass(frozen=True, kw_only=True)
class RunAnalysis(Part):
    """Everything computed for one run (``analysis.run``). The fields of ``OPTIONAL`` are None when the run
    was not analysed that far (skipped, failed): the stored result has no such key then. ``forecast`` is the
    live forecast (key ``live``); ``backtests`` the replay per grid fraction ("0.3")."""

    KEYS: ClassVar[Mapping[str, str]] = {"forecast": "live"}
    NESTED: ClassVar[frozenset[str]] = frozenset({"law", "benchmarks", "forecast", "backtests", "stage", "collapse"})
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "project", "headline_rule", "state", "planned_steps", "planned_from", "range", "warmup", "excluded_steps",
        "degenerate", "best_performance", "last_performance", "entropy_first", "entropy_last", "headroom", "health",
        "health_error", "health_profile", "stage", "collapse"})

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
    entropy_key: str | None
    performance_key: str | None
    performance_kind: str | None
    key_reason: str | None
    unrecognised_keys: tuple[str, ...]
    n_entropy: int
    n_performance: int
    n_entropy_nonfinite: int
    n_performance_nonfinite: int
    last_step: int | None
    finished: bool
    progress: str
    # absent from some results (OPTIONAL)
    project: str | None = None
    headline_rule: str | None = None
    state: str | None = None
    planned_steps: int | None = None
    planned_from: str | None = None
    range: Mapping[str, Any] | None = None
    warmup: Mapping[str, Any] | None = None
    excluded_steps: tuple[int, ...] | None = None
    degenerate: Mapping[str, Any] | None = None
    best_performance: float | None = None
    last_performance: float | None = None
    entropy_first: float | None = None
    entropy_last: float | None = None
    headroom: float | None = None
    health: tuple[Mapping[str, Any], ...] | None = None
    health_error: str | None = None
    health_profile: Mapping[str, Any] | None = None
    stage: Stage | Failure | None = None
    collapse: Collapse | Failure | None = None

    @classmethod
    def _load(cls, name: str, value: Any) -> Any:
        if name == "law":
            return None if value is None else Law.from_dict(value)
        if name == "benchmarks":
            return tuple(Benchmark.from_dict(b) for b in value)
        if name == "forecast":
            return part(Forecast, value)
        if name == "stage":
            return part(Stage, value)
        if name == "collapse":
            return part(Collapse, value)
        return {f: part(Backtest, bt) for f, bt in value.items()}  # backtests

    def _dump(self, name: str, value: Any) -> Any:
        if name == "benchmarks":
            return [b.to_dict() for b in value]
        if name == "backtests":
            return {f: bt.to_dict() for f, bt in value.items()}
        return None if value is None else value.to_dict()  # law, forecast, stage, collapse
