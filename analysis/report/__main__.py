"""`python -m analysis.report`: see analysis.report.cli."""

import sys

from analysis.report.cli import main

sys.exit(main())
