"""Cross-encoder reranking of the top hits (off by default; the model must be loadable offline)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from ragkit.errors import ModelNotAvailableError
from ragkit.types import Hit


def rerank(model_name: str, query: str, hits: Sequence[Hit]) -> list[Hit]:
    """``hits`` re-scored by the cross-encoder ``model_name``, best first; ``rerank_score`` is its score."""
    model = _cross_encoder(model_name)
    if not hits:
        return []
    scores = model.predict([(query, h.text) for h in hits], show_progress_bar=False)
    reranked = [replace(h, rerank_score=float(s), score=float(s)) for h, s in zip(hits, scores)]
    return sorted(reranked, key=lambda h: -h.score)


_CROSS_ENCODERS: dict[str, Any] = {}


def _cross_encoder(name: str) -> Any:
    if name not in _CROSS_ENCODERS:
        from sentence_transformers import CrossEncoder

        from ragkit.text.embedding import resolve_model_path

        try:
            _CROSS_ENCODERS[name] = CrossEncoder(resolve_model_path(name), device="cpu")
        except Exception as exc:
            raise ModelNotAvailableError(
                f"cannot load cross-encoder {name!r} ({exc}); offline, pass a local path or a model in the "
                "Hugging Face cache"
            ) from exc
    return _CROSS_ENCODERS[name]
