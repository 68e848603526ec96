"""python -m lambda_fanout_dev.bench: see lambda_fanout_dev.bench.cli."""

import sys

from .cli import main

sys.exit(main())
