"""`python -m cdc` is the `cdc` command."""

from cdc.app.cli import main

raise SystemExit(main())
