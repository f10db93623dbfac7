#!/usr/bin/env python
"""Script entry point, Megatron-LM style: the same as `srft ingest` (normalise SWE-agent / SWE-smith trajectories).

    python tools/ingest_trajectories.py --help
"""

import sys

from srft_megatron.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
