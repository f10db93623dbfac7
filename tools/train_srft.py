#!/usr/bin/env python
"""Script entry point, Megatron-LM style: the same as `srft train` (train with the step-weighted loss (run under torchrun)).

    python tools/train_srft.py --help
"""

import sys

from srft_megatron.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
