#!/usr/bin/env python
"""Script entry point, Megatron-LM style: the same as `srft preprocess` (tokenise trajectories into Megatron indexed datasets with a loss-weight channel).

    python tools/preprocess_data.py --help
"""

import sys

from srft_megatron.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
