"""``python -m ragkit``: the ``ragkit`` command."""

from ragkit.cli.commands import main

raise SystemExit(main())
