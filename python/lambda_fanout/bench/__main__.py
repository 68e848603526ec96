"""python -m lambda_fanout.bench: see lambda_fanout.bench.cli."""

import sys

from .cli import main

sys.exit(main())
