"""`python -m bench`: the benchmark suite's entry point (see bench/cli.py)."""

from bench.cli import main

raise SystemExit(main())
