"""`python -m app.cli`: the same entry point as the `hulu-workstation` script."""

import sys

from app.cli.main import main

sys.exit(main())
