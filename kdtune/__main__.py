"""`python -m kdtune ...`: the same as the `kdtune` command."""

import sys

from kdtune.cli import main

sys.exit(main())
