"""Evaluation: labelled datasets, IR metrics, evaluating an index and tuning its retrieval settings."""

from ragkit._moved import forward_attributes

_EXPORTS = {"evaluate_index": "ragkit.evaluation.evaluate", "tune": "ragkit.evaluation.tuning", "load_beir": "ragkit.evaluation.datasets", "EvalDataset": "ragkit.evaluation.datasets", "evaluate": "ragkit.evaluation.metrics"}
__all__ = sorted(_EXPORTS)
# The old module ragkit.evaluation is now evaluate.py (measuring) and tuning.py (tuning).
__getattr__ = forward_attributes(__name__, _EXPORTS, ("ragkit.evaluation.evaluate", "ragkit.evaluation.tuning"))
