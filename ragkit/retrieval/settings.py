"""The names of every fixed choice in retrieval, and ``RetrievalSettings``: one validated, frozen value.

Search modes, fusion methods, normalizations and groupings are each one ``Literal`` plus the tuple of
its values, used everywhere (the CLI's choices, the server's schema, validation). This module imports
nothing heavy, so the CLI can build its parser from it without loading numpy.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, Mapping, Union, get_args

from ragkit.errors import ConfigError

if TYPE_CHECKING:
    from ragkit.retrieval.adapter import QueryAdapter
    from ragkit.retrieval.association import QueryAssociations

SearchMode = Literal["hybrid", "bm25", "dense"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
FusionMethod = Literal["adaptive", "rrf", "convex", "dbsf"]
FUSION_METHODS: tuple[str, ...] = get_args(FusionMethod)
Normalization = Literal["minmax", "zscore", "dbsf"]
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
Grouping = Literal["document", "neighbors"]
GROUPINGS: tuple[str | None, ...] = (None, *get_args(Grouping))

# The dense leg's share in adaptive fusion, chosen on SciFact train (see ragkit.retrieval.fusion).
ADAPTIVE_WEIGHT = 0.4
DEFAULT_WEIGHT = 0.5  # the other methods: both legs alike


class Unset(enum.Enum):
    """The type of :data:`UNSET`: "this option was not given", where ``None`` is a real value
    (``weight=None`` means the method's default, overriding a tuned weight)."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset.UNSET


def given_settings(**options: Any) -> dict[str, Any]:
    """The options that were given (not :data:`UNSET`), as keyword settings."""
    return {name: value for name, value in options.items() if value is not UNSET}


def check_choice(option: str, value: Any, valid: tuple[Any, ...]) -> None:
    """Raise a ConfigError naming ``option`` and its valid values when ``value`` is not one of them."""
    if value not in valid:
        raise ConfigError(f"unknown {option} {value!r}; valid: {', '.join(str(v) for v in valid)}")


@dataclass(frozen=True)
class RetrievalSettings:
    """How a search fuses, diversifies, reranks and groups; validated when made.

    ``weight`` is the dense leg's share (BM25 gets ``1 - weight``); None means the method's default
    (0.4 for "adaptive", 0.5 otherwise). ``query_adapter`` / ``associations``: use the index's learned
    ones when it has them (True), ignore them (False), or use the object given. ``min_score`` drops
    candidates whose fused score (the leg's score in a one-leg mode) is below it; ``"auto"`` drops those
    whose calibrated ``Hit.relevance`` is below 0.5 (see :mod:`ragkit.retrieval.relevance`); None
    (default) keeps all.
    """

    method: FusionMethod = "adaptive"
    weight: float | None = None
    normalization: Normalization = "minmax"
    rrf_k: float = 60.0
    depth: int | None = None
    mmr: bool = False
    mmr_lambda: float = 0.7
    group_by: Grouping | None = None
    reranker: str | None = None
    rerank_depth: int = 50
    query_adapter: Union[bool, "QueryAdapter"] = True
    associations: Union[bool, "QueryAssociations"] = True
    association_weight: float = 1.0
    association_threshold: float = 0.5
    min_score: float | Literal["auto"] | None = None

    def __post_init__(self) -> None:
        check_choice("fusion method", self.method, FUSION_METHODS)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        if self.group_by not in GROUPINGS:
            raise ConfigError(f"group_by must be one of {GROUPINGS}, got {self.group_by!r}")
        if self.weight is None:
            object.__setattr__(self, "weight", ADAPTIVE_WEIGHT if self.method == "adaptive" else DEFAULT_WEIGHT)
        _in_range("weight (the dense leg's share)", self.weight, 0.0, 1.0)
        _in_range("mmr_lambda", self.mmr_lambda, 0.0, 1.0)
        check_min_score(self.min_score)
        if self.depth is not None and self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")
        if not 0.0 <= self.association_weight < math.inf:  # also refuses NaN
            raise ConfigError(f"association_weight must be a finite number >= 0, got {self.association_weight}")
        if not 0.0 <= self.association_threshold < 1.0:
            raise ConfigError(f"association_threshold must be in [0, 1), got {self.association_threshold}")

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> "RetrievalSettings":
        """Settings from keyword options (as ``ragkit tune`` saves them); an unknown key is a ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown retrieval settings {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``ragkit tune`` saves): a given adapter or associations object shows as True."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["query_adapter"], out["associations"] = bool(self.query_adapter), bool(self.associations)
        return {k: v.item() if hasattr(v, "item") else v for k, v in out.items()}


def check_min_score(min_score: Any) -> None:
    """A ConfigError unless ``min_score`` is None, ``"auto"`` or a finite number (NaN refused)."""
    if min_score is None or min_score == "auto":
        return
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not -math.inf < min_score < math.inf:
        raise ConfigError(f"min_score must be None, 'auto' or a finite number, got {min_score!r}")


def _in_range(option: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{option} must be in [{low:g}, {high:g}], got {value}")

