"""Tests for ragkit.generators against a real loopback HTTP server (tests/fakellm.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
import traceback
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from fakellm import echo_text, serve_fake_llm

from ragkit.errors import (
    ConfigError,
    GeneratorAuthError,
    GeneratorError,
    GeneratorResponseError,
    GeneratorTimeoutError,
)
from ragkit.generators.base import (
    CallableGenerator,
    Generator,
    StreamingGenerator,
    agenerate,
    as_generator,
    astream,
    generate,
    stream,
)
from ragkit.generators.http import Ollama, OpenAICompatible, retry_after
from ragkit.generators.huggingface import HuggingFaceLocal

MESSAGES = [
    {"role": "system", "content": "Answer from the context. Context: bees make honey."},
    {"role": "user", "content": "What do bees make, and where do they keep it?"},
]
EXPECTED = echo_text(MESSAGES)
SECRET = "sk-test-SECRET-0123456789abcdef"


def make_openai(url: Any, **kw: Any) -> OpenAICompatible:
    kw.setdefault("model", "test-model")
    kw.setdefault("api_key", "")
    return OpenAICompatible(url.v1, timeout=kw.pop("timeout", 2.0), backoff=kw.pop("backoff", 0.01), **kw)


def make_ollama(url: Any, **kw: Any) -> Ollama:
    kw.setdefault("model", "test-model")
    return Ollama(url, timeout=kw.pop("timeout", 2.0), backoff=kw.pop("backoff", 0.01), **kw)


BACKENDS = {"openai": make_openai, "ollama": make_ollama}


@pytest.fixture
def fake():
    with serve_fake_llm() as url:
        yield url


@pytest.fixture(params=sorted(BACKENDS))
def make(request) -> Callable[..., Any]:
    return BACKENDS[request.param]


def collect(aiter: Any) -> list[str]:
    async def run() -> list[str]:
        return [piece async for piece in aiter]

    return asyncio.run(run())


# -- happy paths, each backend -----------------------------------------------------------------


def test_generate_reaches_the_model_with_every_message(fake, make):
    with make(fake) as gen:
        assert gen.generate(MESSAGES) == EXPECTED
    body = fake.requests[-1].body
    assert body["messages"] == MESSAGES and body["stream"] is False and body["model"] == "test-model"


def test_stream_yields_several_pieces_that_join_to_the_answer(fake, make):
    with make(fake) as gen:
        pieces = list(gen.stream(MESSAGES))
    assert len(pieces) > 1 and "".join(pieces) == EXPECTED
    assert fake.requests[-1].body["stream"] is True


def test_async_generate_and_stream(fake, make):
    gen = make(fake)
    assert asyncio.run(gen.agenerate(MESSAGES)) == EXPECTED
    pieces = collect(gen.astream(MESSAGES))
    assert len(pieces) > 1 and "".join(pieces) == EXPECTED
    # the module functions use the native async forms
    assert asyncio.run(agenerate(gen, MESSAGES)) == EXPECTED
    assert collect(astream(gen, MESSAGES)) == pieces


def test_backends_satisfy_the_protocols(fake, make):
    gen = make(fake)
    assert isinstance(gen, Generator) and isinstance(gen, StreamingGenerator)
    assert as_generator(gen) is gen
    assert list(stream(gen, MESSAGES)) == list(gen.stream(MESSAGES))


def test_raw_returns_the_whole_json_answer(fake):
    data = make_openai(fake).raw(MESSAGES)
    assert data["object"] == "chat.completion" and data["usage"]["prompt_tokens"] > 0
    assert asyncio.run(make_openai(fake).araw(MESSAGES))["choices"][0]["message"]["content"] == EXPECTED
    assert make_ollama(fake).raw(MESSAGES)["done"] is True


def test_fake_server_speaks_the_openai_sdk(fake):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=fake.v1, api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == EXPECTED
    chunks = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EXPECTED


# -- options ----------------------------------------------------------------------------------


def test_openai_options_pass_through_over_defaults(fake):
    gen = make_openai(fake, default_options={"temperature": 0.7, "max_tokens": 50}, headers={"X-Trace": "t1"})
    gen.generate(MESSAGES, temperature=0, top_p=0.9, stop=["\n\n"], seed=7, logprobs=True, max_tokens=None)
    request = fake.requests[-1]
    assert request.body == {
        "model": "test-model",
        "temperature": 0,
        "max_tokens": 50,  # None means "not set": the default stays
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "logprobs": True,
        "messages": MESSAGES,
        "stream": False,
    }
    assert request.headers["X-Trace"] == "t1"
    gen.generate(MESSAGES, model="other-model")
    assert fake.requests[-1].body["model"] == "other-model"


def test_ollama_options_go_into_its_options_object(fake):
    gen = make_ollama(fake, default_options={"num_ctx": 4096})
    gen.generate(
        MESSAGES, temperature=0.2, max_tokens=64, stop=["END"], seed=1, format="json", keep_alive="5m"
    )
    body = fake.requests[-1].body
    assert fake.requests[-1].path == "/api/chat"
    assert body["options"] == {
        "num_ctx": 4096,
        "temperature": 0.2,
        "num_predict": 64,
        "stop": ["END"],
        "seed": 1,
    }
    assert body["format"] == "json" and body["keep_alive"] == "5m" and body["stream"] is False


def test_api_key_comes_from_argument_or_environment(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    OpenAICompatible(fake.v1, model="m").generate(MESSAGES)
    assert fake.requests[-1].headers["Authorization"] == "Bearer env-key"
    OpenAICompatible(fake.v1, model="m", api_key="arg-key").generate(MESSAGES)
    assert fake.requests[-1].headers["Authorization"] == "Bearer arg-key"
    monkeypatch.delenv("OPENAI_API_KEY")
    OpenAICompatible(fake.v1, model="m").generate(MESSAGES)
    assert "Authorization" not in fake.requests[-1].headers


# -- retries ----------------------------------------------------------------------------------


def test_retries_succeed_after_transient_500s(fake, make, caplog):
    with caplog.at_level(logging.WARNING, logger="ragkit.generators"):
        assert make(fake, model="fail-500-twice", max_retries=3).generate(MESSAGES) == EXPECTED
    assert len(fake.requests) == 3
    assert caplog.text.count("retrying in") == 2 and "HTTP 500" in caplog.text


def test_streams_and_async_retry_too(fake, make):
    assert "".join(make(fake, model="fail-502-once").stream(MESSAGES)) == EXPECTED
    assert asyncio.run(make(fake, model="fail-500-twice").agenerate(MESSAGES)) == EXPECTED
    assert "".join(collect(make(fake, model="fail-500-once").astream(MESSAGES))) == EXPECTED
    assert len(fake.requests) == 2 + 3 + 2


def test_429_honoursretry_after():
    with serve_fake_llm(retry_after=0.4) as url:
        start = time.monotonic()
        assert make_openai(url, model="fail-429-once").generate(MESSAGES) == EXPECTED
        assert time.monotonic() - start >= 0.4
        assert len(url.requests) == 2


def test_retry_after_header_forms():
    assert retry_after(httpx.Response(429, headers={"Retry-After": "3"})) == 3
    assert retry_after(httpx.Response(429, headers={"retry-after-ms": "250"})) == 0.25
    later = retry_after(
        httpx.Response(429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    )
    assert 25 < later <= 30
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(429)) is None


@pytest.mark.parametrize("run", ["sync", "async"])
def test_gives_up_after_max_retries(fake, make, run):
    gen = make(fake, model="fail-500", max_retries=2)
    with pytest.raises(GeneratorError) as info:
        gen.generate(MESSAGES) if run == "sync" else asyncio.run(gen.agenerate(MESSAGES))
    assert type(info.value) is GeneratorError and info.value.status_code == 500
    message = str(info.value)
    assert "after 3 attempts" in message and "HTTP 500" in message and "fake failure 500" in message
    assert gen.url in message and len(fake.requests) == 3


def test_client_errors_are_not_retried(fake, make):
    with pytest.raises(GeneratorResponseError, match="HTTP 400"):
        make(fake, model="fail-400").generate(MESSAGES)
    with pytest.raises(GeneratorAuthError, match="HTTP 403"):
        make(fake, model="fail-403").generate(MESSAGES)
    assert len(fake.requests) == 2


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gen = OpenAICompatible(f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, backoff=0.01, api_key="")
    with pytest.raises(GeneratorError, match=r"after 2 attempts: could not connect.*server running"):
        gen.generate(MESSAGES)


def test_unresolvable_host_is_a_clear_error():
    gen = OpenAICompatible("http://no-such-host.invalid/v1", model="m", max_retries=0, timeout=5, api_key="")
    with pytest.raises(GeneratorError, match=r"no-such-host\.invalid.*could not connect"):
        gen.generate(MESSAGES)


# -- timeouts, malformed answers, auth -----------------------------------------------------------


@pytest.mark.parametrize("run", ["sync", "stream", "async", "astream"])
def test_timeout_names_url_and_limit(fake, make, run):
    gen = make(fake, model="slow", timeout=0.2)
    start = time.monotonic()
    with pytest.raises(GeneratorTimeoutError) as info:
        if run == "sync":
            gen.generate(MESSAGES)
        elif run == "stream":
            list(gen.stream(MESSAGES))
        elif run == "async":
            asyncio.run(gen.agenerate(MESSAGES))
        else:
            collect(gen.astream(MESSAGES))
    assert time.monotonic() - start < 1.5  # timeouts are not retried
    assert isinstance(info.value, TimeoutError)
    assert gen.url in str(info.value) and "timeout=0.2 s" in str(info.value)


@pytest.mark.parametrize("run", ["sync", "stream", "async", "astream"])
def test_malformed_answers(fake, make, run):
    gen = make(fake, model="malformed")
    with pytest.raises(GeneratorResponseError, match="not a JSON object") as info:
        if run == "sync":
            gen.generate(MESSAGES)
        elif run == "stream":
            list(gen.stream(MESSAGES))
        elif run == "async":
            asyncio.run(gen.agenerate(MESSAGES))
        else:
            collect(gen.astream(MESSAGES))
    assert "not json" in str(info.value)  # an excerpt of what came back


def test_missing_choices(fake, make):
    with pytest.raises(GeneratorResponseError, match="choices|message.content"):
        make(fake, model="no-choices").generate(MESSAGES)


def test_auth_error_is_not_retried_and_hints():
    with serve_fake_llm(token="right-token") as url:
        with pytest.raises(GeneratorAuthError, match=r"HTTP 401 \(a key was sent\).*OPENAI_API_KEY"):
            make_openai(url, api_key="wrong-token", max_retries=3).generate(MESSAGES)
        assert len(url.requests) == 1
        with pytest.raises(GeneratorAuthError, match="no key was sent"):
            make_openai(url, api_key="").generate(MESSAGES)
        assert make_openai(url, api_key="right-token").generate(MESSAGES) == EXPECTED
        assert url.requests[-1].headers["Authorization"] == "Bearer right-token"


def test_api_key_never_leaks(caplog, monkeypatch):
    """The fake server quotes rejected keys back, as careless servers do; ragkit must not pass them on."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # httpx and httpcore too
    errors: list[BaseException] = []
    with serve_fake_llm(token="another-key", delay=2) as url:
        gens = [
            OpenAICompatible(url.v1, model="m", max_retries=1, backoff=0.01, timeout=0.3),
            OpenAICompatible(
                url.v1,
                model="m",
                api_key=SECRET,
                headers={"X-Api-Key": SECRET},
                max_retries=1,
                backoff=0.01,
                timeout=0.3,
            ),
            Ollama(url, model="m", api_key=SECRET, max_retries=1, backoff=0.01, timeout=0.3),
        ]
        for gen in gens:
            calls = (
                gen.generate,
                lambda m, g=gen: list(g.stream(m)),
                lambda m, g=gen: asyncio.run(g.agenerate(m)),
            )
            for call in calls:
                with pytest.raises(GeneratorError) as info:
                    call(MESSAGES)
                errors.append(info.value)
        assert url.requests[0].headers["Authorization"] == f"Bearer {SECRET}"  # it was sent
    with serve_fake_llm(token=SECRET) as url:  # the key is right: now fail in other ways
        for model in ("fail-500", "slow", "malformed", "fail-400"):
            gen = OpenAICompatible(url.v1, model=model, max_retries=1, backoff=0.01, timeout=0.3)
            with pytest.raises(GeneratorError) as info:
                gen.generate(MESSAGES)
            errors.append(info.value)
    assert len(errors) == 13
    assert "Incorrect API key provided: ***" in str(errors[0])  # the quoted key was redacted
    for error in errors:
        text = "".join(traceback.format_exception(error))
        assert SECRET not in text and SECRET not in repr(error)
    for gen in gens:
        assert SECRET not in repr(gen) and SECRET not in str(gen)
    assert "retrying in" in caplog.text and "HTTP Request" in caplog.text  # ours and httpx's
    assert SECRET not in caplog.text


# -- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url", ["localhost:8000/v1", "ftp://example.com/v1", "api.openai.com", "http://"]
)
def test_bad_base_url_is_a_config_error(base_url):
    with pytest.raises(ConfigError, match="base_url must be an absolute http"):
        OpenAICompatible(base_url, model="m")


@pytest.mark.parametrize(
    ("option", "value"),
    [("model", ""), ("timeout", 0), ("timeout", "10"), ("max_retries", -1), ("backoff", -1.0)],
)
def test_bad_options_are_config_errors_naming_the_value(option, value):
    kwargs: dict[str, Any] = {"model": "m", option: value}
    with pytest.raises(ConfigError, match=option):
        Ollama(**kwargs)


@pytest.mark.parametrize("messages", ["hi", [], [{"content": "no role"}], [("user", "hi")]])
def test_bad_messages_are_config_errors(fake, messages):
    with pytest.raises(ConfigError, match="messages"):
        make_openai(fake).generate(messages)
    assert not fake.requests


# -- plain callables and fallbacks --------------------------------------------------------------


def test_plain_callable_is_a_generator():
    seen: dict[str, Any] = {}

    def answer(messages, **options):
        seen.update(options)
        return "reply to " + messages[-1]["content"]

    gen = as_generator(answer)
    assert isinstance(gen, CallableGenerator) and isinstance(gen, Generator)
    assert gen.generate(MESSAGES, temperature=0) == "reply to " + MESSAGES[-1]["content"]
    assert seen == {"temperature": 0}
    assert [generate(answer, MESSAGES)] == list(stream(answer, MESSAGES))
    assert [asyncio.run(agenerate(answer, MESSAGES))] == collect(astream(answer, MESSAGES))


def test_callable_returning_pieces_streams_them():
    def pieces(messages, **options):
        yield from ["a", "b", "c"]

    assert list(stream(pieces, MESSAGES)) == ["a", "b", "c"]
    assert generate(pieces, MESSAGES) == "abc"
    assert collect(astream(pieces, MESSAGES)) == ["a", "b", "c"]
    assert asyncio.run(agenerate(pieces, MESSAGES)) == "abc"


def test_async_callables_are_native():
    async def answer(messages, **options):
        await asyncio.sleep(0)
        return "async answer"

    async def pieces(messages, **options):
        for piece in ("x", "y"):
            yield piece

    assert asyncio.run(agenerate(answer, MESSAGES)) == "async answer"
    assert collect(astream(pieces, MESSAGES)) == ["x", "y"]
    assert generate(answer, MESSAGES) == "async answer"  # via asyncio.run
    assert generate(pieces, MESSAGES) == "xy"


def test_as_generator_rejects_non_callables_and_bad_returns():
    with pytest.raises(TypeError, match="got int"):
        as_generator(42)
    with pytest.raises(TypeError, match="returned int"):
        generate(lambda messages, **o: 7, MESSAGES)
    with pytest.raises(TypeError, match="yielded bytes"):
        generate(lambda messages, **o: iter([b"x"]), MESSAGES)


class OnlyGenerate:
    def generate(self, messages, **options):
        return "whole"


class SyncStreamer(OnlyGenerate):
    def stream(self, messages, **options):
        yield from ["p1", "p2"]


def test_stream_falls_back_to_one_piece():
    assert list(stream(OnlyGenerate(), MESSAGES)) == ["whole"]
    assert collect(astream(OnlyGenerate(), MESSAGES)) == ["whole"]
    assert asyncio.run(agenerate(OnlyGenerate(), MESSAGES)) == "whole"


def test_astream_runs_a_sync_stream_in_a_thread():
    assert collect(astream(SyncStreamer(), MESSAGES)) == ["p1", "p2"]


# -- Hugging Face ------------------------------------------------------------------------------


def test_huggingface_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r'pip install "ragkit\[hf\]"'):
        HuggingFaceLocal("some/model")


def test_huggingface_options_map_to_transformers():
    pytest.importorskip("transformers")
    calls: list[tuple[Any, dict[str, Any]]] = []

    def fake_pipeline(messages, **kwargs):
        calls.append((messages, kwargs))
        return [{"generated_text": "the answer. STOP and more"}]

    gen = HuggingFaceLocal(fake_pipeline, default_options={"max_tokens": 32})
    assert gen.generate(MESSAGES, temperature=0.5, top_p=0.9, stop="STOP") == "the answer. "
    messages, kwargs = calls[-1]
    assert messages == MESSAGES
    assert kwargs == {
        "return_full_text": False,
        "max_new_tokens": 32,
        "do_sample": True,
        "temperature": 0.5,
        "top_p": 0.9,
    }
    gen.generate(MESSAGES)
    assert calls[-1][1]["do_sample"] is False


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A 1-layer GPT-2 with random weights and a word-level tokenizer, built locally (no download)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    words = ["<unk>", "<eos>", "system", "user", "assistant", ":", "bees", "make", "honey", "what"]
    tok = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    )
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(words), n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1
    )
    path = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


def test_huggingface_local_with_a_tiny_model(tiny_model):
    gen = HuggingFaceLocal(tiny_model, device="cpu")
    assert repr(gen) == f"HuggingFaceLocal({tiny_model!r})"
    text = gen.generate(MESSAGES, max_tokens=6)
    assert isinstance(text, str) and text
    pieces = list(gen.stream(MESSAGES, max_tokens=6))
    assert len(pieces) > 1 and "".join(pieces) == text  # greedy: the same answer
    assert asyncio.run(agenerate(gen, MESSAGES, max_tokens=6)) == text
    assert "".join(collect(astream(gen, MESSAGES, max_tokens=6))) == text
    first = pieces[0].strip().split()[0]
    assert gen.generate(MESSAGES, max_tokens=6, stop=first) == text[: text.find(first)]
    assert "".join(gen.stream(MESSAGES, max_tokens=6, stop=first)) == text[: text.find(first)]
