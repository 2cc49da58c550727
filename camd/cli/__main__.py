"""`python -m camd.cli ...`: the same as the `camd` command."""

import sys

from camd.cli import main

sys.exit(main())
