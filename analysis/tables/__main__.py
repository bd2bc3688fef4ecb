"""`python -m analysis.tables`: see analysis.tables.cli (kept there so that the package can
re-export `main` without runpy finding this module already imported)."""

import sys

from analysis.tables.cli import main

sys.exit(main())
