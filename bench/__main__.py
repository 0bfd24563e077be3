"""``python -m bench``: the benchmark run (docs/performance.md)."""

from __future__ import annotations

import sys

from bench.runner import main

sys.exit(main())
