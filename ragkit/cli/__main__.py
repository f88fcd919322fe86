"""``python -m ragkit.cli``."""

from ragkit.cli.commands import main

raise SystemExit(main())
