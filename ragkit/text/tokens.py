"""Token counters for prompt budgeting: pick one by name, or pass your own function.

A token counter is any function ``str -> int``. :func:`resolve_token_counter` accepts:

* ``None`` or ``"approximate"`` (the default): :func:`approximate_token_count`, which needs no
  model and works offline. Each run of letters/digits counts ``ceil(len / 4)`` tokens (one for a
  short word, about one per four characters of a long one), each punctuation mark, symbol, kana
  or CJK ideograph one, whitespace nothing. On English it overestimates BPE/WordPiece
  tokenizers by roughly 5-25 %, which errs on the side of prompts that fit; it can undercount
  text full of rare long words or emoji, so pass the model's own tokenizer when the window is
  tight.
* a callable: used as is.
* ``"tiktoken:<encoding>"`` (e.g. ``"tiktoken:cl100k_base"``): needs ``tiktoken`` and its
  encoding file (downloaded once, or in ``TIKTOKEN_CACHE_DIR``).
* any other string: a Hugging Face tokenizer name or local path, loaded offline through
  :func:`ragkit.text.embedding.load_tokenizer` (the default embedding model's tokenizer always is).
* a tokenizer object (``transformers`` or ``tokenizers``).

Chat messages cost their content plus framing: :func:`count_message_tokens` adds
:data:`MESSAGE_OVERHEAD` per message and :data:`REPLY_OVERHEAD` once, the figures of OpenAI's
cookbook ("How to count tokens with tiktoken") for its chat models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from ragkit.errors import ConfigError, ModelNotAvailableError

__all__ = [
    "MESSAGE_OVERHEAD",
    "REPLY_OVERHEAD",
    "TokenCounter",
    "WORD_UNIT",
    "approximate_token_count",
    "count_message_tokens",
    "hf_token_counter",
    "resolve_token_counter",
]

MESSAGE_OVERHEAD = 3  # <|start|>{role}\n ... <|end|> framing per message, besides the role name
REPLY_OVERHEAD = 3  # the assistant reply is primed with <|start|>assistant<|message|>

# Kana and CJK ideographs: subword vocabularies split such text per character.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD_RUN = re.compile(rf"[^\W{_CJK}]+")
WORD_UNIT = re.compile(rf"[^\W{_CJK}]+|[{_CJK}]")  # a run of letters or digits, or one kana or ideograph
_SINGLE_TOKEN = re.compile(rf"[{_CJK}]|[^\w\s]")


@runtime_checkable
class TokenCounter(Protocol):
    """Anything that counts the tokens of a text."""

    def __call__(self, text: str) -> int: ...


def approximate_token_count(text: str) -> int:
    """Estimate the number of word pieces a subword tokenizer makes of ``text``, without a model.

    Each run of letters and digits counts ``ceil(len / 4)`` (one for short words, about one per four
    characters for long ones), each punctuation mark or symbol one, each kana or CJK ideograph one;
    whitespace counts nothing. It overestimates English a little, which errs towards chunks that fit.
    """
    words = sum((len(word) + 3) // 4 for word in _WORD_RUN.findall(text))
    return words + len(_SINGLE_TOKEN.findall(text))


def fragmentation(model_tokens: float, text_or_estimate: str | float) -> float | None:
    """How finely a model's tokenizer cuts text: its tokens per token of :func:`approximate_token_count`
    (None for empty text). About 0.6-0.8 for English under an English vocabulary (all-MiniLM-L6-v2), 1 for
    Spanish, French or Chinese, 2.2-3 for Arabic or Russian: a model that cuts a script into that many
    pieces was not trained on it (README, "a default that holds")."""
    estimate = approximate_token_count(text_or_estimate) if isinstance(text_or_estimate, str) else text_or_estimate
    return float(model_tokens) / estimate if estimate else None


def hf_token_counter(tokenizer: Any) -> TokenCounter:
    """A :class:`TokenCounter` counting the tokens a Hugging Face tokenizer makes, without special tokens.

    Accepts a ``transformers`` tokenizer or a raw ``tokenizers.Tokenizer``.
    """
    if not callable(tokenizer) and hasattr(tokenizer, "to_str"):  # tokenizers.Tokenizer
        # A copy without the padding/truncation that tokenizer.json files often configure,
        # which would make every count the same; the caller's tokenizer stays untouched.
        raw = type(tokenizer).from_str(tokenizer.to_str())
        raw.no_padding()
        raw.no_truncation()

        def count_raw(text: str) -> int:
            return len(raw.encode(text, add_special_tokens=False).ids)

        return count_raw

    def count(text: str) -> int:
        # verbose=False: counting text longer than the model's window is the point, not a mistake.
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    return count


def resolve_token_counter(spec: str | Callable[[str], int] | Any | None = None) -> Callable[[str], int]:
    """The counter ``spec`` names; see the module docstring for what ``spec`` may be.

    >>> resolve_token_counter()("Bees make honey.")
    5
    >>> resolve_token_counter(lambda text: len(text.split()))("Bees make honey.")
    3
    """
    if spec is None or spec == "approximate":
        return approximate_token_count
    if isinstance(spec, str):
        if spec.startswith("tiktoken:"):
            return _tiktoken_counter(spec.partition(":")[2])
        return _hf_counter(spec)
    if hasattr(spec, "to_str") or (callable(spec) and hasattr(spec, "encode")):
        return hf_token_counter(spec)  # a tokenizers.Tokenizer or a transformers tokenizer
    if callable(spec):
        return spec
    if hasattr(spec, "encode"):
        return _encode_counter(spec)
    raise ConfigError(
        f"token_counter must be None, 'approximate', 'tiktoken:<encoding>', a Hugging Face tokenizer "
        f"name or path, a tokenizer, or a function str -> int; got {type(spec).__name__} {spec!r}"
    )


def count_message_tokens(messages: Iterable[Mapping[str, str]], counter: Callable[[str], int]) -> int:
    """Tokens a list of ``{"role", "content"}`` messages costs a chat model, by ``counter``."""
    total = REPLY_OVERHEAD
    for message in messages:
        total += MESSAGE_OVERHEAD + counter(message["role"]) + counter(message["content"])
    return total


def _tiktoken_counter(encoding: str) -> Callable[[str], int]:
    if not encoding:
        raise ConfigError("token_counter 'tiktoken:' needs an encoding name, e.g. 'tiktoken:cl100k_base'")
    try:
        import tiktoken
    except ImportError as exc:
        raise ConfigError(
            f"token_counter 'tiktoken:{encoding}' needs the tiktoken package: `pip install tiktoken`; "
            "or use the default (None, an offline approximation) or a Hugging Face tokenizer name"
        ) from exc
    try:
        enc = tiktoken.get_encoding(encoding)
    except Exception as exc:  # ValueError for unknown names, network errors for missing files
        raise ModelNotAvailableError(
            f"cannot load tiktoken encoding {encoding!r} ({exc}). Offline, put its file in "
            "TIKTOKEN_CACHE_DIR; known encodings: " + ", ".join(tiktoken.list_encoding_names())
        ) from exc
    return lambda text: len(enc.encode(text, disallowed_special=()))


def _hf_counter(name: str) -> Callable[[str], int]:
    from ragkit.text.embedding import load_tokenizer

    try:
        tokenizer = load_tokenizer(name)
    except ModelNotAvailableError as exc:
        raise ModelNotAvailableError(
            f"token_counter {name!r} is not an available Hugging Face tokenizer ({exc}). Valid: None or "
            "'approximate' (offline default), 'tiktoken:<encoding>', a tokenizer name or local path, "
            "a function"
        ) from exc
    return hf_token_counter(tokenizer) if callable(tokenizer) else _encode_counter(tokenizer)


def _encode_counter(tokenizer: Any) -> Callable[[str], int]:
    """A counter for tokenizers that only offer ``encode(text, add_special_tokens=...)``."""
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
