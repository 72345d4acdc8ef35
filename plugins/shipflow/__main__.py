"""``python -m shipflow`` is the same as the ``shipflow`` console script."""

from shipflow.cli import main

raise SystemExit(main())
