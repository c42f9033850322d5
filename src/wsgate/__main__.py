"""`python -m wsgate` is the `wsgate` command."""

from wsgate.cli.main import main

raise SystemExit(main())
