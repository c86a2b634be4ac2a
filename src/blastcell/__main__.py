"""`python -m blastcell` runs the `blastcell` command."""

import sys

from blastcell.cli import main

sys.exit(main())
