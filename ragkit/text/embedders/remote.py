"""Embedding services: any OpenAI-compatible ``/v1/embeddings`` server, and Ollama's ``/api/embed``.

Both send texts in batches, retry HTTP 408/409/429/5xx and connection failures with exponential
backoff (honouring ``Retry-After``, as the generators do), and raise
:class:`~ragkit.errors.EmbeddingServiceError` naming the URL otherwise; API keys never appear in
reprs or messages. Vectors come back L2-normalised float32, as the index expects. Chunks are sized
with ``tokenizer`` (a name or path :func:`ragkit.text.tokens.resolve_token_counter` takes; default:
the offline approximation), since the service's tokenizer is not at hand.

>>> emb = OllamaEmbedder(model="nomic-embed-text", query_prompt="search_query: ",
...                      passage_prompt="search_document: ")           # doctest: +SKIP
>>> index = ragkit.Index("kb.ragkit", embedder=emb)                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ragkit.errors import ConfigError, EmbeddingServiceError
from ragkit.retrying import backoff_wait
from ragkit.text.embedders.folder import Prompts
from ragkit.text.tokens import resolve_token_counter

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx


class ServiceEmbedder:
    """Shared plumbing: batching, prompts, retries, error mapping. Subclasses say path, body, answer."""

    kind = ""
    path = ""
    default_base_url = ""
    api_key_env: str | None = None

    def __init__(
        self, base_url: str | None = None, *, model: str, api_key: str | None = None,
        query_prompt: str = "", passage_prompt: str = "", dimension: int | None = None,
        max_seq_length: int = 512, tokenizer: str | None = None, batch_size: int = 64,
        timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
    ) -> None:
        import httpx

        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.base_url = str(base_url or self.default_base_url).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self.url = self.base_url if self.base_url.endswith(self.path) else self.base_url + self.path
        self.model = model
        self.name = f"{self.kind}:{model}"
        self.prompts = Prompts(query=query_prompt, passage=passage_prompt)
        self.max_seq_length = int(max_seq_length)
        self.batch_size, self.timeout, self.max_retries, self.backoff = batch_size, float(timeout), max_retries, backoff
        self._dimension = dimension
        self._tokenizer = tokenizer
        self._api_key = api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None)
        self._client = httpx.Client(timeout=self.timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # -- the embedder protocol ------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self._embed(["dimension probe"]).shape[1])
        return self._dimension

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "base_url": self.base_url, "prompts": self.prompts.to_dict(),
                "runtime": self.kind, "precision": "service"}

    def use_prompts(self, prompts: Prompts) -> None:
        self.prompts = prompts

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._embed([self.prompts.passage + t for t in texts])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.prompts.query + t for t in texts])

    def token_counter(self) -> Callable[[str], int]:
        return resolve_token_counter(self._tokenizer)

    def close(self) -> None:
        self._client.close()

    # -- HTTP ---------------------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> np.ndarray:
        parts = [self._vectors(self._post(self._body(texts[i : i + self.batch_size])), len(texts[i : i + self.batch_size]))
                 for i in range(0, len(texts), self.batch_size)]
        if not parts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        vectors = np.vstack(parts).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
            raise self._error("answer holds a zero or non-finite vector")
        return np.ascontiguousarray(vectors / norms)

    def _body(self, texts: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _rows(self, data: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def _vectors(self, data: dict[str, Any], n: int) -> np.ndarray:
        try:
            vectors = np.asarray(self._rows(data), dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._error(f"answer has no usable vectors ({type(exc).__name__}: {exc})") from None
        if vectors.ndim != 2 or len(vectors) != n:
            raise self._error(f"asked for {n} vectors, got an array of shape {vectors.shape}")
        return vectors

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = self._client.post(self.url, json=body, headers=headers)
            except httpx.TimeoutException:
                raise self._error(f"no answer within timeout={self.timeout:g} s; raise timeout=") from None
            except httpx.TransportError as exc:
                reason = f"could not connect ({type(exc).__name__}); is the server running and base_url right?"
            else:
                if response.is_success:
                    return self._json(response)
                reason = self._refusal(response)
            if attempt == self.max_retries:
                raise self._error(f"failed after {attempt + 1} attempts: {reason}", response)
            wait = backoff_wait(attempt, self.backoff, response)
            logger.warning("POST %s: %s; retrying in %.2f s", self.url, reason, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _refusal(self, response: Any) -> str:
        """A retryable failure's reason; raise at once for one that retrying cannot fix."""
        status, excerpt = response.status_code, self._redact(response.text[:200])
        if status in (401, 403):
            sent = "a key was sent" if self._api_key else "no key was sent"
            raise self._error(f"HTTP {status} ({sent}): {excerpt!r}; check api_key=", response)
        if status in _RETRY_STATUS or status >= 500:
            return f"HTTP {status}: {excerpt!r}"
        raise self._error(f"HTTP {status}: {excerpt!r}", response)

    def _json(self, response: Any) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("error"):
            raise self._error(f"answer is not a JSON object with vectors: {self._redact(response.text[:200])!r}", response)
        return data

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _error(self, message: str, response: Any = None) -> EmbeddingServiceError:
        error = EmbeddingServiceError(f"POST {self.url}: {self._redact(message)}")
        error.url = self.url  # type: ignore[attr-defined]
        error.status_code = getattr(response, "status_code", None)  # type: ignore[attr-defined]
        return error


class OpenAIEmbedder(ServiceEmbedder):
    """An OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, llama.cpp, TEI, LM Studio).

    ``base_url`` is the API root (``http://localhost:8000/v1``); the key comes from ``api_key``, else
    ``OPENAI_API_KEY``, else none is sent.
    """

    kind = "openai-compatible"
    path = "/embeddings"
    default_base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"

    def _body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts, "encoding_format": "float"}

    def _rows(self, data: dict[str, Any]) -> list[Any]:
        return [row["embedding"] for row in sorted(data["data"], key=lambda row: row["index"])]


class OllamaEmbedder(ServiceEmbedder):
    """Ollama's native ``/api/embed`` (``base_url`` defaults to ``http://localhost:11434``)."""

    kind = "ollama"
    path = "/api/embed"
    default_base_url = "http://localhost:11434"

    def _body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def _rows(self, data: dict[str, Any]) -> list[Any]:
        return list(data["embeddings"])
