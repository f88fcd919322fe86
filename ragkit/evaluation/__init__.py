"""Evaluation: labelled datasets, IR metrics, evaluating an index and tuning its retrieval settings."""

from ragkit._moved import forward_attributes

_EXPORTS = {"evaluate_index": "ragkit.evaluation.measure", "tune": "ragkit.evaluation.tuning", "load_beir": "ragkit.evaluation.datasets", "EvalDataset": "ragkit.evaluation.datasets", "evaluate": "ragkit.evaluation.metrics"}
__all__ = sorted(_EXPORTS)
# The old module ragkit.evaluation is now measure.py and tuning.py. (No submodule is named like an
# export: importing it would replace the export on the package, as ragkit.evaluation.evaluate did.)
__getattr__ = forward_attributes(__name__, _EXPORTS, ("ragkit.evaluation.measure", "ragkit.evaluation.tuning"))
