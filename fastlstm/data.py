"""Small built-in data sets for the tutorials (no downloads).

* :data:`AIRLINE_PASSENGERS`: the monthly totals of international airline
  passengers, January 1949 to December 1960, in thousands (Box and Jenkins,
  *Time Series Analysis*, series G): the 144 published values.
* :func:`composite_wave`: a seeded noisy sum of sine waves.
* :func:`windows`: cut a series into (past window, next value) pairs.
"""

import numpy as np

__all__ = ["AIRLINE_PASSENGERS", "AIRLINE_START", "airline_passengers", "composite_wave",
           "windows"]

#: first month of the airline series (year, month)
AIRLINE_START = (1949, 1)

#: monthly international airline passengers (thousands), 1949-01 .. 1960-12
AIRLINE_PASSENGERS = (
    112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118,  # 1949
    115, 126, 141, 135, 125, 149, 170, 170, 158, 133, 114, 140,  # 1950
    145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166,  # 1951
    171, 180, 193, 181, 183, 218, 230, 242, 209, 191, 172, 194,  # 1952
    196, 196, 236, 235, 229, 243, 264, 272, 237, 211, 180, 201,  # 1953
    204, 188, 235, 227, 234, 264, 302, 293, 259, 229, 203, 229,  # 1954
    242, 233, 267, 269, 270, 315, 364, 347, 312, 274, 237, 278,  # 1955
    284, 277, 317, 313, 318, 374, 413, 405, 355, 306, 271, 306,  # 1956
    315, 301, 356, 348, 355, 422, 465, 467, 404, 347, 305, 336,  # 1957
    340, 318, 362, 348, 363, 435, 491, 505, 404, 359, 310, 337,  # 1958
    360, 342, 406, 396, 420, 472, 548, 559, 463, 407, 362, 405,  # 1959
    417, 391, 419, 461, 472, 535, 622, 606, 508, 461, 390, 432,  # 1960
)


def airline_passengers():
    """The airline series as a float64 array of 144 values (thousands of passengers)."""
    return np.array(AIRLINE_PASSENGERS, dtype=np.float64)


def composite_wave(n=2000, noise=0.1, seed=0):
    """A noisy composite waveform of n samples (float64).

    sin(2 pi t / 40) + 0.5 sin(2 pi t / 13 + 1) + 0.3 sin(2 pi t / 97), plus
    Gaussian noise of standard deviation `noise` drawn from
    ``numpy.random.default_rng(seed)``.
    """
    t = np.arange(n, dtype=np.float64)
    clean = (np.sin(2 * np.pi * t / 40) + 0.5 * np.sin(2 * np.pi * t / 13 + 1.0)
             + 0.3 * np.sin(2 * np.pi * t / 97))
    return clean + noise * np.random.default_rng(seed).standard_normal(n)


def windows(series, width):
    """(X (N, width), y (N,)): every run of `width` values and the value after it."""
    series = np.asarray(series)
    n = len(series) - width
    if n < 1:
        raise ValueError(f"a series of {len(series)} values has no window of {width} "
                         "followed by a value")
    idx = np.arange(width)[None, :] + np.arange(n)[:, None]
    return series[idx], series[width:]
