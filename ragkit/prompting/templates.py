"""Prompt templates: find a Jinja2 template, render it safely into chat messages or plain text.

:func:`load_template` is the one way templates are loaded. ``template`` may be

* the name of a template in ``template_dir`` (``"mine"`` finds ``mine.jinja``, ``.j2``, ``.txt``),
  which shadows a built-in of the same name;
* a built-in name: ``qa`` (grounded answers with citations), ``chat``, ``summarize``, ``fewshot``;
* a path to a template file (``str`` or :class:`~pathlib.Path`);
* a template string: any ``str`` containing ``{{``, ``{%``, ``{#`` or a newline.

Built-ins live in the top-level ``templates/`` folder of the checkout; a wheel carries that folder
as ``ragkit/templates``. The package folder is looked at first, then the checkout's.

Templates render in a :class:`~jinja2.sandbox.SandboxedEnvironment` (no attribute access to
Python internals, no file access beyond ``include`` of sibling templates) with
:class:`~jinja2.StrictUndefined`: a missing variable is a :class:`~ragkit.errors.TemplateError`
naming the template, the variable and the variables given.

Chat turns are marked with a tag; text outside any tag is not allowed once one is used, and a
template without tags renders as one user message::

    {% message "system" %}Answer from the context only.{% endmessage %}
    {% message "user" %}{{ question }}{% endmessage %}

:func:`messages_to_text` gives the plain-text form: one user message is its content alone;
otherwise each turn under a role header (``System:``, ``User:``, ``Assistant:``).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment

from ragkit.errors import RagkitError, TemplateError, TemplateNotFoundError

__all__ = ["ROLES", "PromptTemplate", "builtin_dir", "builtin_names", "load_template", "messages_to_text"]

ROLES = ("system", "user", "assistant")
SUFFIXES = (".jinja", ".j2", ".jinja2", ".txt")
_STRING_SIGNS = ("{{", "{%", "{#", "\n")

# Markers around each rendered message; the per-process nonce keeps passage text from forging one.
_NONCE = uuid.uuid4().hex[:12]
_START, _SEP, _END = f"\x00<msg {_NONCE} ", f" {_NONCE}>", f"\x00</msg {_NONCE}>"
_MESSAGE = re.compile(re.escape(_START) + r"(\w+)" + re.escape(_SEP) + r"(.*?)" + re.escape(_END), re.DOTALL)


class MessageExtension(Extension):
    """``{% message "role" %}...{% endmessage %}``: one chat turn."""

    tags = {"message"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        role = parser.parse_expression()
        body = parser.parse_statements(("name:endmessage",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_message", [role]), [], [], body).set_lineno(lineno)

    def _message(self, role: Any, caller: Any) -> str:
        if role not in ROLES:
            raise jinja2.TemplateRuntimeError(f"unknown message role {role!r}; valid: {', '.join(ROLES)}")
        content = caller()
        if _START in content:
            raise jinja2.TemplateRuntimeError("{% message %} blocks cannot be nested")
        return f"{_START}{role}{_SEP}{content}{_END}"


def builtin_dir() -> Path:
    """The folder of built-in templates: inside the package (wheel), else the checkout's ``templates/``."""
    package = Path(__file__).resolve().parent.parent  # ragkit/
    # The wheel carries templates/ as ragkit/_templates (a folder named like this module would shadow it).
    for candidate in (package / "_templates", package.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise TemplateNotFoundError(
        f"built-in templates not found in {package / '_templates'} or {package.parent / 'templates'}; "
        "the installation is incomplete"
    )


def builtin_names() -> list[str]:
    """Names of the built-in templates, e.g. ``['chat', 'fewshot', 'qa', 'summarize']``."""
    return sorted(p.stem for p in builtin_dir().glob("*.jinja"))


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template. ``variables`` are the names it reads from its context."""

    name: str
    template: jinja2.Template
    variables: frozenset[str]
    uses_everything: bool = False  # an include/extends this loader could not follow

    def uses(self, variable: str) -> bool:
        """Whether rendering may read ``variable``."""
        return self.uses_everything or variable in self.variables

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """Render into ``[{"role", "content"}, ...]``; any failure is a :class:`TemplateError`."""
        try:
            out = self.template.render(**variables)
        except RagkitError:
            raise
        except jinja2.UndefinedError as exc:
            missing = sorted(self.variables - set(variables) - set(self.template.environment.globals))
            hint = f" (not given: {', '.join(missing)})" if missing else ""
            raise TemplateError(
                f"template {self.name!r}: {exc.message}{hint}; "
                f"variables given: {', '.join(sorted(variables))}"
            ) from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateNotFoundError(f"template {self.name!r} includes a missing template: {exc}") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"template {self.name!r} did something the sandbox forbids: {exc}") from exc
        except Exception as exc:  # a user template can fail in any way; say which one failed
            raise TemplateError(f"template {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        return split_messages(out, self.name)


def load_template(
    template: str | os.PathLike[str], *, template_dir: str | os.PathLike[str] | None = None
) -> PromptTemplate:
    """Load ``template`` (a name, a path or a template string; see the module docstring).

    >>> load_template("Q: {{ question }}").render(question="Why?")
    [{'role': 'user', 'content': 'Q: Why?'}]
    """
    folder = Path(template_dir) if template_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise TemplateNotFoundError(f"template_dir {str(folder)!r} is not a directory")
    if isinstance(template, str) and any(sign in template for sign in _STRING_SIGNS):
        env = _environment(_search_path(folder))
        return _compile(env, "<string>", source=template)
    name = os.fspath(template)
    if isinstance(template, str) and folder is not None:
        _check_confined(name, folder)
        found = _find_in(folder, name)
        if found is not None:
            return _compile(_environment(_search_path(folder)), name, loader_name=found)
    if isinstance(template, str) and name in builtin_names():
        return _compile(_environment(_search_path(None)), name, loader_name=f"{name}.jinja")
    path = Path(name)
    if path.is_file():
        return _compile(_environment(_search_path(path.resolve().parent)), name, loader_name=path.name)
    where = f"; not in template_dir {str(folder)!r}" if folder is not None else ""
    raise TemplateNotFoundError(
        f"template {name!r} not found: no such file {str(path.resolve())!r}{where}; "
        f"built-in templates: {', '.join(builtin_names())}"
    )


def split_messages(rendered: str, name: str = "<string>") -> list[dict[str, str]]:
    """Messages from rendered template output (see the module docstring); empty turns are dropped."""
    if _START not in rendered:
        content = rendered.strip()
        return [{"role": "user", "content": content}] if content else []
    messages, pos = [], 0
    for match in _MESSAGE.finditer(rendered):
        _check_outside(rendered[pos : match.start()], name)
        content = match.group(2).strip()
        if content:
            messages.append({"role": match.group(1), "content": content})
        pos = match.end()
    _check_outside(rendered[pos:], name)
    return messages


def messages_to_text(messages: Iterable[Mapping[str, str]]) -> str:
    """The plain-text form of chat messages.

    >>> messages_to_text([{"role": "user", "content": "Hi"}])
    'Hi'
    >>> turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    >>> print(messages_to_text(turns))
    System:
    Be brief.
    <BLANKLINE>
    User:
    Hi
    """
    messages = list(messages)
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}:\n{m['content']}" for m in messages)


def _check_outside(text: str, name: str) -> None:
    if text.strip():
        raise TemplateError(
            f"template {name!r}: text outside {{% message %}} blocks: {text.strip()[:60]!r}; "
            "once a template uses message blocks, all its text must be inside one"
        )


def _search_path(first: Path | None) -> tuple[str, ...]:
    dirs = [str(first)] if first is not None else []
    return (*dirs, str(builtin_dir()))


def _check_confined(name: str, folder: Path) -> None:
    """A template *name* given with ``template_dir`` stays inside it: no ``..``, no absolute path.
    (A :class:`~pathlib.Path` is an explicit file and may be anywhere.)"""
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or "\\" in name:
        raise TemplateNotFoundError(
            f"template name {name!r} leaves template_dir {str(folder)!r}; names are confined to that folder "
            "(pass a pathlib.Path to load a file elsewhere)"
        )


class _ConfinedLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that refuses a file (an ``include`` too) resolving outside its folders,
    e.g. through a symlink in the template folder."""

    def get_source(self, environment: Any, template: str) -> Any:
        source, filename, uptodate = super().get_source(environment, template)
        real = Path(filename).resolve()
        if not any(real.is_relative_to(Path(folder).resolve()) for folder in self.searchpath):
            raise jinja2.TemplateNotFound(f"{template} (it resolves outside the template folder)")
        return source, filename, uptodate


def _find_in(folder: Path, name: str) -> str | None:
    for candidate in (name, *(name + suffix for suffix in SUFFIXES)):
        path = folder / candidate
        if path.is_file() and path.resolve().is_relative_to(folder.resolve()):
            return candidate
    return None


@lru_cache(maxsize=32)
def _environment(search_path: tuple[str, ...]) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=_ConfinedLoader(list(search_path)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # prompts are not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[MessageExtension],
    )


def _compile(
    env: SandboxedEnvironment, name: str, *, source: str | None = None, loader_name: str | None = None
) -> PromptTemplate:
    """Compile a template string (``source``) or a file the loader finds (``loader_name``)."""
    try:
        if loader_name is not None:
            template = env.get_template(loader_name)
            source = env.loader.get_source(env, loader_name)[0]  # type: ignore[union-attr]
        else:
            source = source or ""
            template = env.from_string(source)
        variables, complete = _variables(env, env.parse(source), set())
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {name!r}: syntax error on line {exc.lineno}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateNotFoundError(f"template {name!r}: cannot find {exc.name!r}") from exc
    return PromptTemplate(name, template, frozenset(variables), uses_everything=not complete)


def _variables(env: SandboxedEnvironment, ast: nodes.Template, seen: set[str]) -> tuple[set[str], bool]:
    """Variables ``ast`` and the templates it includes read; False where an include is dynamic."""
    found = set(meta.find_undeclared_variables(ast))
    complete = True
    for ref in meta.find_referenced_templates(ast):
        if ref is None:
            complete = False
        elif ref not in seen:
            seen.add(ref)
            source = env.loader.get_source(env, ref)[0]  # type: ignore[union-attr]
            more, ok = _variables(env, env.parse(source), seen)
            found |= more
            complete &= ok
    return found, complete
