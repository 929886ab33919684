#!/usr/bin/env python
"""Print tables of fastlstm vs the NumPy reference, torch.nn.LSTM/GRU/RNN and ONNX Runtime.

A thin wrapper of ``python -m fastlstm.bench`` (same options; ``--help``
lists them). The peers are timed when installed: ``pip install torch==2.13.0
onnx onnxruntime threadpoolctl``. Examples, from the repository root:

    python benchmarks/compare.py                     # the full default run
    python benchmarks/compare.py --quick             # a few seconds, tiny shapes
    python benchmarks/compare.py --cells lstm --shapes 100x32x256x256 --threads 1
    python benchmarks/compare.py --no-peers          # fast vs reference only
"""

import os
import sys

try:
    from fastlstm.bench import main
except ImportError:  # run from a source checkout where fastlstm was built in place
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fastlstm.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="benchmarks/compare.py"))
