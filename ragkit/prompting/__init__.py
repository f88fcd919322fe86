"""Prompting: templates, the prompt builder, few-shot examples, the token budget, citations."""

from ragkit._moved import forward_attributes

_EXPORTS = {"Prompt": "ragkit.prompting.builder", "PromptBuilder": "ragkit.prompting.builder", "ExampleSet": "ragkit.prompting.examples", "Citation": "ragkit.prompting.citations", "extract_citations": "ragkit.prompting.citations"}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.prompting.builder")
