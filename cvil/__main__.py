"""`python -m cvil ...` (what `torchrun -m cvil train ...` runs)."""

from cvil.cli import main

raise SystemExit(main())
