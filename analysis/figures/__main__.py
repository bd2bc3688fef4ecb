"""`python -m analysis.figures`: see analysis.figures.cli (kept there so that the package can
re-export `main` without runpy finding this module already imported)."""

import sys

from analysis.figures.cli import main

sys.exit(main())
