"""The loader registry: built-ins and plug-ins through one table, a loader's errors reported by the
sync, every loader under the per-file limits (a registered one runs in the worker process too)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import ragkit
from ragkit.errors import ConfigError, LoadError
from ragkit.ingest import registry
from ragkit.ingest.limits import ParseLimits
from ragkit.ingest.loading import load_bytes
from ragkit.ingest.registry import LoadContext, loader_for, register_loader, registered_extensions
from ragkit.ingest.worker import load_bounded, needs_worker
from ragkit.types import Document


def load_recipe(data: bytes, context: LoadContext) -> list[Document]:
    """A plug-in loader: ``title: text`` lines, one section each."""
    if data.startswith(b"!"):
        raise LoadError(context.source, "recipe card is torn")
    lines = data.decode().splitlines()
    return [Document(context.source, "\n\n".join(lines), context.metadata(pid=os.getpid()))]


def hog_memory(data: bytes, context: LoadContext) -> list[Document]:
    blocks = [bytearray(100_000_000) for _ in range(50)]  # 5 GB: over the 700 MB limit below
    return [Document(context.source, str(len(blocks)), context.metadata())]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registry", {})
    monkeypatch.setattr(registry, "_overrides", {})
    monkeypatch.setattr(registry, "_plugins_loaded", False)


def test_built_in_formats_are_registered_without_importing_their_parsers() -> None:
    exts = registered_extensions()
    assert {".md", ".html", ".pdf", ".json", ".py", ".docx", ".pptx", ".xlsx", ".csv", ".tsv"} <= exts
    assert loader_for("report.DOCX").kind == "docx" and loader_for(".pdf").isolated
    assert loader_for("Dockerfile").kind == "code" and loader_for("photo.png") is None


def test_a_registered_loader_reads_its_files_and_says_what_kind_they_are() -> None:
    register_loader(".recipe", load_recipe)
    assert ".recipe" in registered_extensions()
    (doc,) = load_bytes(b"Honey cake\nwarm the honey", "cards/cake.recipe")
    assert doc.text == "Honey cake\n\nwarm the honey" and doc.metadata["type"] == "recipe"
    assert doc.metadata["source"] == "cards/cake.recipe" and doc.metadata["title"] == "cake"


def test_a_loader_error_names_the_file_and_its_reason() -> None:
    register_loader("recipe", load_recipe)  # the dot is optional
    with pytest.raises(LoadError) as info:
        load_bytes(b"!torn", "cards/torn.recipe")
    assert info.value.path == "cards/torn.recipe" and info.value.reason == "recipe card is torn"


def test_a_loader_that_returns_something_else_is_reported() -> None:
    register_loader(".bad", lambda data, context: "just a string")
    with pytest.raises(LoadError, match="not a list of Documents"):
        load_bytes(b"x", "a.bad")


def test_an_importable_loader_runs_in_the_worker_process_under_the_limits() -> None:
    register_loader(".recipe", load_recipe)
    limits = ParseLimits()
    assert needs_worker("a.recipe", 10, limits)
    (doc,) = load_bounded(b"Mead\nferment it", "mead.recipe", "mead.recipe", limits)
    assert doc.metadata["pid"] != os.getpid()  # parsed in the worker, which knew the loader
    with pytest.raises(LoadError, match="recipe card is torn"):
        load_bounded(b"!", "torn.recipe", "torn.recipe", limits)


def test_a_plug_in_over_the_memory_limit_is_reported_as_too_complex() -> None:
    register_loader(".hog", hog_memory)
    with pytest.raises(LoadError, match="too complex"):
        load_bounded(b"x", "a.hog", "a.hog", ParseLimits(memory_bytes=700_000_000))


def test_a_loader_only_this_process_has_runs_here_bounded_by_max_chars(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ragkit.ingest.registry"):
        register_loader(".card", lambda data, context: [Document(context.source, data.decode(), {})])
    assert "cannot be imported by a worker process" in caplog.text
    assert not needs_worker("a.card", 10, ParseLimits())
    assert load_bounded(b"hello", "a.card", "a.card", ParseLimits())[0].text == "hello"
    with pytest.raises(LoadError, match="text too long"):
        load_bounded(b"x" * 50, "b.card", "b.card", ParseLimits(max_chars=10))


def test_register_loader_refuses_what_is_not_a_loader() -> None:
    with pytest.raises(ConfigError, match="extension"):
        register_loader("", load_recipe)
    with pytest.raises(ConfigError, match="loader must be"):
        register_loader(".x", 42)  # type: ignore[arg-type]


def test_a_package_adds_loaders_through_the_entry_point_group(tmp_path: Path, monkeypatch) -> None:
    dist = tmp_path / "ragkit_recipes-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ragkit-recipes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n.recipe = test_registry:load_recipe\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = loader_for("x.recipe")
    assert spec is not None and spec.target == "test_registry:load_recipe"
    assert load_bytes(b"a\nb", "x.recipe")[0].text == "a\n\nb"


def test_register_loader_is_public() -> None:
    assert ragkit.register_loader is register_loader and ragkit.LoadContext is LoadContext
