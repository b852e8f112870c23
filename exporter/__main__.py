"""`python -m exporter` is the `tierwatch` command."""

from exporter.cli import main

raise SystemExit(main())
