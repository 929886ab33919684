"""The time loop split over several threads gives the reference's results."""

import concurrent.futures
import multiprocessing
import os

import numpy as np
import pytest

import fastlstm
from fastlstm import _core, reference
from fastlstm.selfcheck import make_problem

from _compare import TOLERANCE, assert_fast_matches_reference


def forward_variants(cell, fwd):
    """fwd in either direction, with and without biases and initial states."""
    for reverse in (False, True):
        for bare in (False, True):
            f = dict(fwd, reverse=reverse)
            if bare:
                f.update(b_ih=None, b_hh=None, h0=None)
                if cell == "lstm":
                    f["c0"] = None
            yield f


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("B,lengths", [
    (2, None), (5, [6, 0, 3, 6, 1]), (9, None),
    # large enough for every cell to use the threads (B * G*H * H >= 128K)
    (40, None), (40, [(3 * b) % 7 for b in range(40)])])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threaded_time_loop_matches_reference(threads, n, cell, B, lengths, dtype):
    # H = 72: slices of 16 units plus a ragged last one; from B = 9 (LSTM,
    # GRU) or 40 (RNN) the step is large enough for the time loop, the input
    # projection and the backward products to run on the threads
    threads(n)
    for reverse in (False, True):
        fwd, bwd = make_problem(cell, T=6, B=B, I=5, H=72, dtype=dtype, lengths=lengths)
        fwd["reverse"] = reverse
        out_f = assert_fast_matches_reference(cell, fwd, bwd)
        inf = getattr(fastlstm, cell + "_forward")(**fwd, training=False)
        for a, b in zip(inf[:-1], out_f):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("cell,B,H", [("lstm", 24, 256), ("gru", 32, 256), ("rnn", 64, 320)])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("split", ["rows", "units"])
def test_threaded_backward_loop_matches_reference(threads, monkeypatch, n, cell, B, H, ragged,
                                                  dtype, split):
    # these batches split the backward's time loop by rows (8 or more per
    # thread), or with FASTLSTM_TEST_UNITS=1 by units, which it does only
    # from 6M per-step multiply-adds (B * G*H * H); smaller steps run it on
    # one thread and share only the whole-sequence products (the test above)
    threads(n)
    if split == "units":
        monkeypatch.setenv("FASTLSTM_TEST_UNITS", "1")
    lengths = [(7 * b) % 5 for b in range(B)] if ragged else None
    for reverse in (False, True):
        fwd, bwd = make_problem(cell, T=4, B=B, I=5, H=H, dtype=dtype, lengths=lengths)
        fwd["reverse"] = reverse
        assert_fast_matches_reference(cell, fwd, bwd)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_pipelined_backward_products_with_ragged_batch(threads, monkeypatch, cell):
    # below 6M per step the backward's loop runs on thread 0 while thread 1
    # computes the products of the rows already final, blocks of 128 or
    # more: a long ragged sequence gives it such blocks (x's valid rows
    # gathered as they are packed, dx scattered block by block). float64
    # only: in float32 the weight gradients' sums over ~1600 rows differ
    # from the reference's by more than the tight tolerance, in any order.
    # (FASTLSTM_TEST_UNITS=1: this batch would split its rows.)
    threads(2)
    monkeypatch.setenv("FASTLSTM_TEST_UNITS", "1")
    dtype = np.float64
    lengths = np.random.default_rng(3).integers(0, 81, 40)
    fwd, bwd = make_problem(cell, T=80, B=40, I=5, H=72, dtype=dtype, lengths=lengths)
    assert_fast_matches_reference(cell, fwd, bwd)


def test_threads_give_identical_results_to_one_thread(threads):
    fwd, _ = make_problem("lstm", T=20, B=3, I=16, H=128, dtype=np.float32)
    threads(1)
    one = fastlstm.lstm_forward(**fwd, training=False)
    threads(2)
    two = fastlstm.lstm_forward(**fwd, training=False)
    for a, b in zip(one[:-1], two[:-1]):
        np.testing.assert_array_equal(a, b)  # same arithmetic, only split


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_rejects_nonsense(bad):
    with pytest.raises(ValueError, match=r"^n: expected an int >= 1"):
        fastlstm.set_num_threads(bad)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_leader_going_on_alone_gives_the_same_results(threads, monkeypatch, n, cell, ragged,
                                                      dtype):
    # When the other threads of a forward lose their CPUs (another runtime's
    # spinning threads, say), thread 0 goes on alone with every thread's
    # units; FASTLSTM_TEST_SOLO=s makes it do so at step s. B = 64, H = 64:
    # the projection runs in chunks of 16 (LSTM), 21 (GRU), 64 (RNN) steps,
    # so taking over at step 1 or 17 leaves chunks for the leader to project
    # with the others' weights; step 0 is the first barrier.
    # (FASTLSTM_TEST_UNITS=1: this batch would otherwise split its rows
    # across the threads, with no barrier per step to go on alone at)
    threads(n)
    monkeypatch.setenv("FASTLSTM_TEST_UNITS", "1")
    T, B = 40, 64
    lengths = [(b * 11) % (T + 1) for b in range(B)] if ragged else None
    fwd, _ = make_problem(cell, T=T, B=B, I=8, H=64, dtype=dtype, lengths=lengths)
    forward = getattr(fastlstm, cell + "_forward")
    for reverse in (False, True):
        fwd["reverse"] = reverse
        for training in (False, True):
            monkeypatch.delenv("FASTLSTM_TEST_SOLO", raising=False)
            want = forward(**fwd, training=training)
            for step in (0, 1, 17, T - 1):
                monkeypatch.setenv("FASTLSTM_TEST_SOLO", str(step))
                got = forward(**fwd, training=training)
                for a, b in zip(got[:-1], want[:-1]):
                    np.testing.assert_array_equal(a, b)
                if training:  # the saved workspace (gates, hprev, extra) too
                    for a, b in zip(got[-1].saved[1], want[-1].saved[1]):
                        np.testing.assert_array_equal(a, b)
    ref = getattr(reference, cell + "_forward")(**fwd, training=False)
    for a, b in zip(got[:-1], ref[:-1]):
        np.testing.assert_allclose(a, b, **TOLERANCE[np.dtype(dtype)])


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_split_matches_units_split_and_reference(threads, monkeypatch, n, cell, ragged,
                                                      dtype):
    # From 8 rows per thread a time loop (forward or backward) splits the
    # batch's rows across the threads, each running every step of its rows
    # alone (a ragged batch's rows dealt round them by length);
    # FASTLSTM_TEST_UNITS=1 makes it split the hidden units instead, as
    # smaller batches do. B = 41 splits
    # unevenly; LSTM's projection runs in chunks of 6 (float64) or 12 steps,
    # so T = 15 ends on a partial chunk; lengths include 0 and T.
    threads(n)
    T, B, H = 15, 41, 64
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    assert _core.row_threads(n, T, B, H, G * H) == n
    lengths = [(b * 7) % (T + 1) for b in range(B)] if ragged else None
    fwd, bwd = make_problem(cell, T=T, B=B, I=7, H=H, dtype=dtype, lengths=lengths)
    # upstream gradients scaled so that the weight gradients stay near 1: the
    # units split's backward sums them in blocks that depend on timing (a
    # second thread takes the rows the loop has finished), and in float32
    # an entry near zero of a sum of terms near 50 could differ by more than
    # atol from the rows split's
    bwd = {k: (v / np.sqrt(T * B)).astype(dtype) for k, v in bwd.items()}
    forward, backward = (getattr(fastlstm, cell + f) for f in ("_forward", "_backward"))
    tol = TOLERANCE[np.dtype(dtype)]
    for f in forward_variants(cell, fwd):
        assert_fast_matches_reference(cell, f, bwd)
        for training in (False, True):
            monkeypatch.setenv("FASTLSTM_TEST_UNITS", "1")
            want = forward(**f, training=training)
            monkeypatch.delenv("FASTLSTM_TEST_UNITS")
            got = forward(**f, training=training)
            for a, b in zip(got[:-1], want[:-1]):
                np.testing.assert_allclose(a, b, **tol)
            if training:  # the saved workspace (gates, hprev, extra) too
                for a, b in zip(got[-1].saved[1], want[-1].saved[1]):
                    np.testing.assert_allclose(a, b, **tol)
                # and backward, whose loop splits the same way
                monkeypatch.setenv("FASTLSTM_TEST_UNITS", "1")
                want_g = backward(want[-1], **bwd)
                monkeypatch.delenv("FASTLSTM_TEST_UNITS")
                got_g = backward(want[-1], **bwd)
                for a, b in zip(got_g, want_g):
                    if b is None:
                        assert a is None
                    else:
                        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("B", [64, 72])
def test_large_steps_split_units_not_rows(threads, B):
    # from 512K values of w_hh (G*H * H) the rows are not split (each
    # thread would stream all of both weights at every step): the hidden
    # units are, or past FL_THREAD_MAX_B = 64 rows the BLAS runs each step's
    # product (units again when fastlstm runs every product itself)
    threads(2)
    T, H = 3, 512
    assert _core.row_threads(2, 100, 128, 256, 4 * 256) == 2
    assert _core.row_threads(2, 100, 64, 512, 512) == 2
    assert _core.row_threads(2, T, B, H, 4 * H) == 1
    assert _core.row_threads(2, T, B, H, 2 * H) == 1
    lengths = [(b * 5) % (T + 1) for b in range(B)]
    for lens in (None, lengths):
        fwd, bwd = make_problem("lstm", T=T, B=B, I=9, H=H, dtype=np.float64, lengths=lens)
        assert_fast_matches_reference("lstm", fwd, bwd)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("cell,B,H", [("lstm", 24, 256), ("gru", 32, 256), ("rnn", 64, 320)])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_backward_leader_going_on_alone_gives_the_same_results(threads, monkeypatch, n, cell, B,
                                                               H, ragged, dtype):
    # the backward's time loop split over threads (as above); thread 0 takes
    # over at the loop's first, second or last barrier (T = 6 steps), the
    # others go on to their share of the whole-sequence products
    # (FASTLSTM_TEST_UNITS=1: these batches would split their rows, with no
    # barrier per step)
    threads(n)
    monkeypatch.setenv("FASTLSTM_TEST_UNITS", "1")
    T = 6
    lengths = [(5 * b) % (T + 1) for b in range(B)] if ragged else None
    fwd, bwd = make_problem(cell, T=T, B=B, I=5, H=H, dtype=dtype, lengths=lengths)
    forward, backward = (getattr(fastlstm, cell + f) for f in ("_forward", "_backward"))
    for reverse in (False, True):
        fwd["reverse"] = reverse
        monkeypatch.delenv("FASTLSTM_TEST_SOLO", raising=False)
        cache = forward(**fwd)[-1]
        want = backward(cache, **bwd)
        for wait in (0, 1, T - 1):
            monkeypatch.setenv("FASTLSTM_TEST_SOLO", str(wait))
            got = backward(cache, **bwd)
            for a, b in zip(got, want):
                if b is not None:
                    np.testing.assert_array_equal(a, b)
    monkeypatch.delenv("FASTLSTM_TEST_SOLO")
    if dtype == np.float64:  # (float32 at these sizes: the threaded-backward test above)
        assert_fast_matches_reference(cell, fwd, bwd)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("B,I,H", [(1, 64, 32), (3, 40, 24)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pipelined_projection_matches_reference(threads, cell, B, I, H, dtype):
    # Steps too small to split (B * G*H * H < 128K) run on one thread while
    # a second projects the input ahead of them, 64 rows of XP per chunk
    # (22 steps at B = 3), from 3M multiply-adds of projection: T ends on a
    # partial chunk; H = 24 is not a whole number of panels (the projection
    # by gate blocks), H = 32 in float32 is (one product).
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    I = I * 4 // G  # (about the same number of steps for every cell)
    T = -(-3_200_000 // (B * G * H * I))
    T += 1 if T % 64 == 0 else 0
    threads(2)
    assert _core.pipe_projection(2, T, B, I, H, G * H)
    assert not _core.pipe_projection(1, T, B, I, H, G * H)
    assert not _core.pipe_projection(2, T, B, I, H, G * H, True)  # (ragged: never)
    forward = getattr(fastlstm, cell + "_forward")
    tol = TOLERANCE[np.dtype(dtype)]
    fwd, bwd = make_problem(cell, T=T, B=B, I=I, H=H, dtype=dtype)
    # upstream gradients scaled so that the weight gradients, sums over
    # hundreds of steps, stay near 1 (in float32 one near zero, summed in
    # another order, would differ by more than atol in any path)
    bwd = {k: (v / np.sqrt(T * B)).astype(dtype) for k, v in bwd.items()}
    for f in forward_variants(cell, fwd):
        out = assert_fast_matches_reference(cell, f, bwd)
        # inference runs the same pipeline: the same numbers
        inf = forward(**f, training=False)
        for a, b in zip(inf[:-1], out):
            np.testing.assert_array_equal(a, b)
        threads(1)
        one = forward(**f, training=False)
        threads(2)
        for a, b in zip(inf[:-1], one[:-1]):
            np.testing.assert_allclose(a, b, **tol)


# shapes that take each threaded path: rows split (B = 24), units split
# (B = 9, H = 72), the pipelined projection (T = 600, B = 1)
POOL_SHAPES = [("lstm", 5, 24, 7, 64), ("gru", 5, 9, 5, 72), ("lstm", 600, 1, 40, 32)]


def _pool_work(k):
    cell, T, B, I, H = POOL_SHAPES[k % len(POOL_SHAPES)]
    fwd, bwd = make_problem(cell, T=T, B=B, I=I, H=H, seed=k)
    forward, backward = (getattr(fastlstm, cell + f) for f in ("_forward", "_backward"))
    out = forward(**fwd)
    inf = forward(**fwd, training=False)
    return list(out[:-1]) + list(inf[:-1]) + list(backward(out[-1], **bwd))


def _assert_same(got, want):
    for a, b in zip(got, want):
        if b is None:
            assert a is None
        else:
            np.testing.assert_array_equal(a, b)


def test_concurrent_calls_on_the_pool_match_serial_ones(threads):
    # calls from several Python threads at once each take their own workers
    # from the bridge's pool (which starts more when it has too few); a
    # thread's results do not depend on which workers ran them
    threads(3)
    assert _core.pipe_projection(3, 600, 1, 40, 32, 128)
    assert _core.row_threads(3, 5, 24, 64, 256) == 3
    n = 12
    serial = [_pool_work(k) for k in range(n)]
    assert not np.array_equal(serial[0][0], serial[3][0])  # (a mix-up would show)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        for _ in range(2):
            for got, want in zip(ex.map(_pool_work, range(n)), serial):
                _assert_same(got, want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threaded_calls_work_in_a_forked_child(threads):
    # the pool's workers are not in a forked child: its calls start threads
    # of their own (a child waiting on the parent's workers would hang)
    threads(2)
    want = [_pool_work(k) for k in range(3)]  # (the parent's pool has workers now)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.map_async(_pool_work, range(3)).get(timeout=120)
    for g, w in zip(got, want):
        _assert_same(g, w)


def test_large_inference_rule():
    # Inferences above 64 rows with 4G multiply-adds or more (T * B * G*H *
    # (I + H)) take the path tested below on 2 threads, not smaller ones, nor one
    # thread, nor 64 rows
    assert _core.pre_projection(2, 20, 128, 512, 512, 2048)        # 5.4G
    assert not _core.pre_projection(2, 5, 128, 512, 512, 2048)     # 1.3G
    assert not _core.pre_projection(1, 20, 128, 512, 512, 2048)
    assert not _core.pre_projection(2, 40, 64, 512, 512, 2048)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whole_projection_then_units_split_matches_reference(threads, monkeypatch, n, cell,
                                                             dtype):
    # Above 64 rows with much work in all, a forward has each thread project
    # the whole input for its units first and then splits its steps by units
    # on fastlstm's threads, and the backward runs its time loop so too, with
    # the whole-sequence products on the BLAS after it; FASTLSTM_TEST_PRE=1
    # takes that path at this size (and FASTLSTM_TEST_UNITS=1 keeps the batch from
    # splitting its rows). The leader going on alone at any step gives the
    # same results.
    threads(n)
    T, B, H = 6, 72, 64
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    assert not _core.pre_projection(n, T, B, 7, H, G * H)
    monkeypatch.setenv("FASTLSTM_TEST_PRE", "1")
    assert _core.pre_projection(n, T, B, 7, H, G * H)
    monkeypatch.setenv("FASTLSTM_TEST_UNITS", "1")
    fwd, bwd = make_problem(cell, T=T, B=B, I=7, H=H, dtype=dtype)
    # (upstream gradients scaled so that the weight gradients stay near 1,
    # as in the rows-split test above)
    bwd = {k: (v / np.sqrt(T * B)).astype(dtype) for k, v in bwd.items()}
    forward = getattr(fastlstm, cell + "_forward")
    tol = TOLERANCE[np.dtype(dtype)]
    for f in forward_variants(cell, fwd):
        assert_fast_matches_reference(cell, f, bwd)
        want = getattr(reference, cell + "_forward")(**f, training=False)
        got = forward(**f, training=False)
        for a, b in zip(got[:-1], want[:-1]):
            np.testing.assert_allclose(a, b, **tol)
        # a long inference projects a chunk of steps at a time (=2: one step)
        monkeypatch.setenv("FASTLSTM_TEST_PRE", "2")
        chunked = forward(**f, training=False)
        monkeypatch.setenv("FASTLSTM_TEST_PRE", "1")
        for a, b in zip(chunked[:-1], got[:-1]):
            np.testing.assert_array_equal(a, b)
        for step in (0, 1, T - 1):
            monkeypatch.setenv("FASTLSTM_TEST_SOLO", str(step))
            alone = forward(**f, training=False)
            monkeypatch.delenv("FASTLSTM_TEST_SOLO")
            for a, b in zip(alone[:-1], got[:-1]):
                np.testing.assert_array_equal(a, b)
