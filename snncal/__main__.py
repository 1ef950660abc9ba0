"""``python -m snncal`` (also under ``torchrun -m snncal``): the command line."""

from snncal.app.cli import main

raise SystemExit(main())
