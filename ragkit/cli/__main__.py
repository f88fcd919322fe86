"""``python -m ragkit.cli``."""

from ragkit.cli.main import main

raise SystemExit(main())
