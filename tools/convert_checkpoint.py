#!/usr/bin/env python
"""Script entry point, Megatron-LM style: the same as `srft convert` (Megatron <-> Hugging Face conversion and verification).

    python tools/convert_checkpoint.py --help
"""

import sys

from srft_megatron.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
