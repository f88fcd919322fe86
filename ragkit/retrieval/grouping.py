"""Grouping of ranked hits: the best chunk per document, or touching chunks merged into one passage."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from ragkit.retrieval.settings import Grouping
from ragkit.types import Hit


def group_hits(hits: Sequence[Hit], group_by: Grouping | None) -> list[Hit]:
    """``hits`` grouped as ``group_by`` says (None: unchanged)."""
    if group_by == "document":
        return best_per_document(hits)
    if group_by == "neighbors":
        return merge_neighbors(hits)
    return list(hits)


def best_per_document(hits: Sequence[Hit]) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.doc_id not in seen:
            seen.add(hit.doc_id)
            out.append(hit)
    return out


def merge_neighbors(hits: Sequence[Hit]) -> list[Hit]:
    """Merge hits of the same document whose character spans touch or overlap into one passage.

    The merged passage keeps the best hit's score and evidence; its text is the chunks'
    texts joined in document order (overlapping text is not repeated).
    """
    merged: list[Hit] = []
    for hit in hits:
        for i, kept in enumerate(merged):
            if kept.doc_id == hit.doc_id and hit.start <= kept.end + 1 and kept.start <= hit.end + 1:
                first, second = (kept, hit) if kept.start <= hit.start else (hit, kept)
                overlap = max(0, first.end - second.start)
                text = first.text + ("" if overlap else "\n") + second.text[overlap:] if second.end > first.end else first.text
                merged[i] = replace(kept, text=text, start=first.start, end=max(first.end, second.end))
                break
        else:
            merged.append(hit)
    return merged
