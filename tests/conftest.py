import numpy as np
import pytest

import fastlstm
from fastlstm import _core


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def threads():
    """fastlstm.set_num_threads, the count restored after the test."""
    before = fastlstm.get_num_threads()
    yield fastlstm.set_num_threads
    fastlstm.set_num_threads(before)


@pytest.fixture
def gemm():
    """_core.set_gemm, from 'auto'; the mode and thread count restored after."""
    before = _core.set_gemm("auto")
    threads = fastlstm.get_num_threads()
    yield _core.set_gemm
    _core.set_gemm(before)
    fastlstm.set_num_threads(threads)
