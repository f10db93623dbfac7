#!/usr/bin/env python
"""Script entry point, Megatron-LM style: the same as `srft evaluate` (vLLM + agent + swebench evaluation).

    python tools/evaluate_swebench.py --help
"""

import sys

from srft_megatron.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
