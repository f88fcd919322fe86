"""What a folder sync leaves out, and why: the user's include/exclude patterns, the ``.gitignore`` and
``.ragkitignore`` files in the folder, and the kinds of file that are not worth indexing by default.

Patterns have gitignore semantics (the :mod:`pathspec` library's ``GitIgnoreSpec``), relative to the
synced folder: ``*.md`` matches a name at any depth, ``docs/*.md`` only below ``docs/`` (``*`` does not
cross ``/``), ``drafts/**`` or ``drafts/`` everything in ``drafts``, ``!keep.md`` takes a file back, and
a pattern ending in ``/`` matches folders only. An excluded folder is not walked at all (so, as in git,
no file inside it can be taken back). An ignore file applies to its own folder and below, a deeper one
and a later line winning; ``.ragkitignore`` is read after ``.gitignore`` in the same folder, so it can
take back what git ignores (``!dist/``).

By default (no include patterns) a sync also skips what is not prose for a reader: images and fonts
(unless a loader is known for their type), site assets (css/js/map), minified files and lock files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragkit.errors import ConfigError

if TYPE_CHECKING:  # imported where patterns are compiled: a search never needs it (10 ms of each CLI call)
    import pathspec

__all__ = ["IGNORE_FILES", "IgnoreLevel", "PatternRules", "compile_patterns", "default_skip", "read_ignore_file"]

logger = logging.getLogger(__name__)

IGNORE_FILES = (".gitignore", ".ragkitignore")
_IGNORE_FILE_BYTES = 1 << 20  # an ignore file is a few lines; a huge one is not read

_IMAGES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff", ".avif",
                     ".heic", ".psd"})
_FONTS = frozenset({".woff", ".woff2", ".ttf", ".otf", ".eot"})
_ASSETS = frozenset({".css", ".scss", ".sass", ".less", ".js", ".mjs", ".cjs", ".map"})
_LOCK_NAMES = frozenset({
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb", "poetry.lock",
    "uv.lock", "Pipfile.lock", "pdm.lock", "Cargo.lock", "Gemfile.lock", "composer.lock", "go.sum", "flake.lock",
    "mix.lock", "Podfile.lock", "packages.lock.json", "pubspec.lock",
})


def default_skip(name: str, has_loader: Callable[[str], bool]) -> tuple[str, str] | None:
    """``(reason, detail)`` when a file of this name is not indexed by default, else ``None``.

    ``has_loader(name)`` says whether a loader is known for the name: an image or font with one (an
    OCR loader, say) is indexed. Site assets, minified and lock files are skipped even though they
    would load as code or text: they are build output, not documentation.
    """
    suffix = os.path.splitext(name)[1].lower()
    if name in _LOCK_NAMES or suffix == ".lock":
        return "lock file", "" if name in _LOCK_NAMES else "*.lock"
    if ".min." in name.lower():
        return "minified", "*.min.*"
    if suffix in _ASSETS:
        return "site asset", suffix
    if has_loader(name):
        return None
    if suffix in _IMAGES:
        return "image", suffix
    if suffix in _FONTS:
        return "font", suffix
    return "unsupported", suffix or "(no suffix)"


def compile_patterns(patterns: Sequence[str] | None, kind: str) -> pathspec.GitIgnoreSpec | None:
    """Gitignore-style patterns as one spec (``None`` for none); a bad one is a ConfigError naming
    ``kind`` ("include", "exclude")."""
    if isinstance(patterns, str):  # a lone string would otherwise be read as one pattern per character
        patterns = [patterns]
    if not patterns:
        return None
    import pathspec

    for pattern in patterns:
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{kind} pattern {pattern!r} is not a valid gitignore-style pattern: {exc}") from None
    return pathspec.GitIgnoreSpec.from_lines([p.removeprefix("./") for p in patterns])


def read_ignore_file(path: str, label: str) -> pathspec.GitIgnoreSpec | None:
    """The patterns of one ignore file, or ``None`` when it is absent, unreadable or a symlink; a bad
    line is logged and left out, not a failed sync."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(_IGNORE_FILE_BYTES)
    except OSError as exc:
        logger.warning("not reading %s: %s", label, exc)
        return None
    import pathspec

    lines = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except (ValueError, TypeError) as exc:
            logger.warning("%s line %d: ignoring %r: %s", label, number, line, exc)
            continue
        lines.append(line)
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return spec if len(spec) else None


@dataclass(frozen=True)
class IgnoreLevel:
    """One ignore file: the folder it sits in (``""`` or ``"a/b/"``), its name for reports, its patterns."""

    base: str
    label: str
    spec: pathspec.GitIgnoreSpec


class PatternRules:
    """The user's include/exclude patterns and the ignore files read so far, answering for each path
    whether it is left out and by which rule."""

    def __init__(self, include: Sequence[str] | None, exclude: Sequence[str] | None, *, ignore_files: bool) -> None:
        import pathspec

        self.include = compile_patterns(include, "include")
        self.exclude = compile_patterns(exclude, "exclude")
        # each exclude pattern on its own, to name the one that left a file out (a negation names none)
        self._each = [(p, pathspec.GitIgnoreSpec.from_lines([p.removeprefix("./")]))
                      for p in ([exclude] if isinstance(exclude, str) else exclude or ())]
        self.ignore_files = ignore_files

    def levels_for(self, folder: str, prefix: str, parent: tuple[IgnoreLevel, ...]) -> tuple[IgnoreLevel, ...]:
        """``parent`` plus the ignore files of ``folder`` (whose relative path is ``prefix``)."""
        if not self.ignore_files:
            return parent
        found = []
        for name in IGNORE_FILES:
            spec = read_ignore_file(os.path.join(folder, name), prefix + name)
            if spec is not None:
                found.append(IgnoreLevel(prefix, prefix + name, spec))
        return parent + tuple(found)

    def excluded(self, rel: str, levels: tuple[IgnoreLevel, ...]) -> tuple[str, str] | None:
        """``(reason, detail)`` when ``rel`` (ending in ``/`` for a folder) is excluded by ``--exclude``
        or an ignore file, else ``None``."""
        if self.exclude is not None and self.exclude.match_file(rel):
            return "excluded", "exclude " + " ".join(repr(p) for p in self._matching(rel))
        ignored_by = None
        for level in levels:  # outermost first: a deeper file, or a later line, decides
            result = level.spec.check_file(rel[len(level.base):])
            if result.include is not None:
                ignored_by = level.label if result.include else None
        return ("ignore file", ignored_by) if ignored_by else None

    def _matching(self, rel: str) -> list[str]:
        hits = [p for p, spec in self._each if spec.match_file(rel)]
        return hits or [p for p, _ in self._each]

    def not_included(self, rel: str) -> bool:
        """Whether include patterns were given and none takes ``rel``."""
        return self.include is not None and not self.include.match_file(rel)
