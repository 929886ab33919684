"""fastlstm: fast CPU recurrent-network kernels (LSTM, GRU, plain RNN).

Forward and backward through time in C, with PyTorch's math and weight
layout; ``fastlstm.reference`` holds pure-NumPy twins of every function.
"""

from ._api import GRUGrads, LSTMGrads, RNNGrads
from ._fast import (gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_backward,
                    rnn_forward)

__version__ = "0.1.0"

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward",
           "rnn_backward", "LSTMGrads", "GRUGrads", "RNNGrads", "__version__"]
