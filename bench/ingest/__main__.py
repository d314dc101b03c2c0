"""`python -m bench.ingest`: the ingest benchmark."""

import sys

from bench.ingest.cli import main

sys.exit(main())
