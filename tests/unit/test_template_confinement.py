"""Template names stay inside ``template_dir`` (issue 19, part 6): no ``..``, no absolute path, no
symlink out of the folder, for the template itself or anything it includes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragkit.errors import TemplateNotFoundError
from ragkit.prompting.templates import load_template


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    inside = tmp_path / "templates"
    inside.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET {{ question }}")
    (inside / "ok.jinja").write_text("Q: {{ question }}")
    return inside, secret


def test_dot_dot_names_are_refused(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    inside, _secret = folders
    monkeypatch.chdir(inside)
    with pytest.raises(TemplateNotFoundError, match="confined"):
        load_template("../secret.txt", template_dir=inside)


def test_absolute_names_are_refused(folders: tuple[Path, Path]) -> None:
    inside, secret = folders
    with pytest.raises(TemplateNotFoundError, match="confined"):
        load_template(str(secret), template_dir=inside)


def test_a_symlink_out_of_the_folder_is_not_followed(folders: tuple[Path, Path]) -> None:
    inside, secret = folders
    (inside / "link.jinja").symlink_to(secret)
    with pytest.raises(TemplateNotFoundError):
        load_template("link", template_dir=inside)


def test_an_include_through_a_symlink_out_of_the_folder_is_refused(folders: tuple[Path, Path]) -> None:
    inside, secret = folders
    (inside / "link.txt").symlink_to(secret)
    (inside / "outer.jinja").write_text("{% include 'link.txt' %}")
    with pytest.raises(TemplateNotFoundError, match="outside"):
        load_template("outer", template_dir=inside).render(question="q")


def test_names_inside_the_folder_still_load(folders: tuple[Path, Path]) -> None:
    inside, _ = folders
    assert load_template("ok", template_dir=inside).render(question="why")[0]["content"] == "Q: why"
    assert load_template("qa", template_dir=inside).name == "qa"
