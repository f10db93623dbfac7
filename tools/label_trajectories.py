#!/usr/bin/env python
"""Script entry point, Megatron-LM style: the same as `srft label` (label every step with a critic on vLLM replicas).

    python tools/label_trajectories.py --help
"""

import sys

from srft_megatron.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
