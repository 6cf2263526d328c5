"""``python -m gridmesh`` is the ``gridmesh`` command."""

from gridmesh.cli import main

raise SystemExit(main())
