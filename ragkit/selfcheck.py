"""``python -m ragkit.selfcheck``: prove an installation is complete, without an index or a model.

Checks that the built-in templates are found (inside the installed package when ragkit was installed
from a wheel) and that each renders a prompt, as text and as chat messages. CI runs it from outside
the checkout, so a wheel that forgot ``templates/`` fails here.
"""

from __future__ import annotations

import sys

from ragkit.prompting.builder import PromptBuilder
from ragkit.prompting.templates import builtin_dir, builtin_names
from ragkit.types import Hit


def main() -> int:
    folder = builtin_dir()
    names = builtin_names()
    hit = Hit(chunk_id="a.md#0", doc_id="a.md", text="Bees swarm in late spring.", score=1.0,
              metadata={"source": "a.md", "title": "Swarming"}, rank=1)
    for name in names:
        prompt = PromptBuilder(name, max_tokens=4096).build("When do bees swarm?", [hit])
        if not prompt.text.strip() or not prompt.messages:
            print(f"FAIL template {name!r} rendered nothing", file=sys.stderr)
            return 1
    print(f"ok: {len(names)} built-in templates ({', '.join(names)}) from {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
