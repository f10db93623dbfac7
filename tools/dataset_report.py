#!/usr/bin/env python
"""Script entry point, Megatron-LM style: the same as `srft report` (summarise a preprocessed dataset (Table 1)).

    python tools/dataset_report.py --help
"""

import sys

from srft_megatron.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
