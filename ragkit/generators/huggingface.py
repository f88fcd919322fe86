"""``HuggingFaceLocal``: a local transformers pipeline as a generator (``pip install "ragkit[hf]"``)."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ragkit.errors import GeneratorError, ModelNotAvailableError
from ragkit.generators.base import Message, check_messages, merged_options

_HF_HINT = 'HuggingFaceLocal needs transformers: pip install "ragkit[hf]"'


class HuggingFaceLocal:
    """A local transformers ``text-generation`` pipeline, prompted through the model's chat template.

    ``model`` is a model id or local path (loaded on first use; offline unless the
    weights are cached), or an already built pipeline. Options: ``max_tokens``
    (default 256), ``temperature`` (0 or absent: greedy), ``top_p``, ``seed``,
    ``stop`` (str or list; the answer is cut before the first one, but generation
    itself runs on to ``max_tokens``, since transformers' ``stop_strings`` fails on
    some tokenizers); others go to the model's ``generate()``.

    >>> gen = HuggingFaceLocal("Qwen/Qwen2.5-0.5B-Instruct")  # doctest: +SKIP
    >>> gen.generate([{"role": "user", "content": "Hi"}], max_tokens=20)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str | int | None = None,
        default_options: Mapping[str, Any] | None = None,
        pipeline_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if importlib.util.find_spec("transformers") is None:
            raise ImportError(_HF_HINT)
        self.model = model
        self.device = device
        self.default_options = dict(default_options or {})
        self.pipeline_kwargs = dict(pipeline_kwargs or {})
        self._pipeline: Any = None if isinstance(model, str) else model
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        name = self.model if isinstance(self.model, str) else type(self.model).__name__
        return f"HuggingFaceLocal({name!r})"

    @property
    def pipeline(self) -> Any:
        """The transformers pipeline, built on first use."""
        with self._lock:
            if self._pipeline is None:
                transformers = _import_transformers()
                kwargs = {"device": self.device} if self.device is not None else {}
                try:
                    self._pipeline = transformers.pipeline(
                        "text-generation", model=self.model, **kwargs, **self.pipeline_kwargs
                    )
                except OSError as exc:
                    raise ModelNotAvailableError(f"cannot load model {self.model!r}: {exc}") from exc
            return self._pipeline

    def generate(self, messages: list[Message], **options: Any) -> str:
        kwargs, stops = self._generate_kwargs(options)
        out = self.pipeline(check_messages(messages), return_full_text=False, **kwargs)
        return _cut_at_stop(out[0]["generated_text"], stops)

    def stream(self, messages: list[Message], **options: Any) -> Iterator[str]:
        kwargs, stops = self._generate_kwargs(options)
        checked, pipe = check_messages(messages), self.pipeline
        streamer = _import_transformers().TextIteratorStreamer(
            pipe.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        failure: list[BaseException] = []

        def run() -> None:
            try:
                pipe(checked, streamer=streamer, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                failure.append(exc)
                streamer.end()  # unblock the consumer

        worker = threading.Thread(target=run, name="ragkit-hf-stream", daemon=True)
        worker.start()
        yield from _stream_until_stop((p for p in streamer if p), stops)
        worker.join()
        if failure:
            raise GeneratorError(f"{self!r} failed while generating: {failure[0]}") from failure[0]

    def _generate_kwargs(self, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        opts = merged_options(self.default_options, options)
        stop = opts.pop("stop", None)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if "seed" in opts:
            _import_transformers().set_seed(int(opts.pop("seed")))
        kwargs: dict[str, Any] = {"max_new_tokens": opts.pop("max_tokens", 256)}
        temperature = opts.pop("temperature", 0)
        kwargs["do_sample"] = bool(temperature)
        if temperature:
            kwargs["temperature"] = temperature
        return {**kwargs, **opts}, stops


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(_HF_HINT) from exc
    return transformers


def _cut_at_stop(text: str, stops: list[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def _stream_until_stop(pieces: Iterable[str], stops: list[str]) -> Iterator[str]:
    """Pass pieces on, holding back just enough text to cut the answer at the first stop string."""
    if not stops:
        yield from pieces
        return
    hold = max(len(s) for s in stops) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = _cut_at_stop(buffer, stops)
        if len(cut) < len(buffer):
            if cut:
                yield cut
            return
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold :]
    if buffer:
        yield buffer
