"""fastlstm: fast CPU recurrent-network kernels (LSTM, GRU, plain RNN).

Forward and backward through time in C, with PyTorch's math and weight
layout; ``fastlstm.reference`` holds pure-NumPy twins of every function.
``LSTM``, ``GRU``, ``RNN`` and the cells are NumPy modules with torch.nn's
constructors and parameter names; ``fastlstm.torch`` (optional) holds
torch.nn.Module versions.
"""

from ._api import GRUGrads, LSTMGrads, RNNGrads
from ._fast import (empty_cache, gru_backward, gru_forward, lstm_backward, lstm_forward,
                    rnn_backward, rnn_forward)
from ._threads import get_num_threads, set_num_threads
from .io import load, save
from .nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__version__ = "0.1.0"

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward",
           "rnn_backward", "LSTMGrads", "GRUGrads", "RNNGrads",
           "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "save", "load",
           "set_num_threads", "get_num_threads", "empty_cache", "__version__"]
