"""The benchmark command (fastlstm.bench): table and JSON structure, peers' numerics.

Runs the command on tiny shapes with few rounds. Nothing here asserts on
timings: the numbers are only checked to exist and be positive.
"""

import importlib.util
import json
import time

import numpy as np
import pytest

from fastlstm import bench, cli

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ORT = (importlib.util.find_spec("onnxruntime") is not None
            and importlib.util.find_spec("onnx") is not None)


def _table(text, title):
    """The markdown table under the heading that contains `title`: (header, rows)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and title in line)
    table = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip("|").split("|")])
        elif table:
            break
    header, sep, rows = table[0], table[1], table[2:]
    assert all(set(s) <= set(":-") for s in sep)
    assert all(len(r) == len(header) for r in rows)
    return header, rows


def test_quick_run_prints_tables_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--quiet", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    peers = bench.available_peers(bench.PEERS)
    assert "Machine:" in out and "SGEMM peak" in out

    n_cases = len(bench.QUICK_SHAPES) * len(bench.CELLS)
    for mode, title in bench.MODE_TITLES.items():
        header, rows = _table(out, title)
        assert header[:3] == ["cell", "shape (TxBxIxH)", "fastlstm ms"]
        assert header[-2:] == ["GFLOP/s", "% of SGEMM peak"]
        assert "reference ms" in header and "ref/fastlstm" in header
        for peer in peers:
            if peer == "ort" and mode == "fwdbwd":  # ONNX Runtime is forward only
                assert "ort ms" not in header
            else:
                assert f"{peer} ms" in header and f"{peer}/fastlstm" in header
        assert len(rows) == n_cases
        assert {r[0] for r in rows} == set(bench.CELLS)
        assert {r[1] for r in rows} == {bench.shape_str(s) for s in bench.QUICK_SHAPES}
        assert not any("!" in c for r in rows for c in r)  # every output agreed

    header, rows = _table(out, "one cell step")
    assert [r[0] for r in rows] == list(bench.CELLS)
    header, rows = _table(out, "ragged batch")
    assert len(rows) == len(bench.CELLS) * len(bench.MODES)

    data = json.loads(path.read_text())
    assert {"machine", "options", "gemm_peak_gflops", "cases", "latency", "ragged"} <= set(data)
    assert data["machine"]["versions"]["numpy"] == np.__version__
    assert data["machine"]["cpu"] and data["machine"]["logical_cpus"] >= 1
    assert data["gemm_peak_gflops"]["1"] > 0
    # the peak is the best GEMM at hand: SciPy's BLAS and the timed peers'
    peaks = data["gemm_peaks_by_source"]["1"]
    assert "scipy" in peaks and set(peaks) <= {"scipy"} | set(data["options"]["peers"])
    # measured before and after the cases; the higher is the peak
    after = data["gemm_peaks_by_source_after"]["1"]
    assert set(after) == set(peaks)
    assert data["gemm_peak_gflops_before"]["1"] == max(peaks.values())
    assert data["gemm_peak_gflops_after"]["1"] == max(after.values())
    assert data["gemm_peak_gflops"]["1"] == max(max(peaks.values()), max(after.values()))
    assert len(data["cases"]) == n_cases * len(bench.MODES)
    for case in data["cases"]:
        assert case["threads"] == 1 and case["dtype"] == "float32"
        impls = set(case["median_s"])
        assert {"fastlstm", "reference"} <= impls
        assert set(case["ratio_vs_fastlstm"]) == impls - {"fastlstm"}
        assert all(t > 0 for t in case["median_s"].values())
        assert all(len(s) == case["rounds"] for s in case["samples_s"].values())
        assert case["flops"] == bench.flops(case["cell"], *case["shape"], case["mode"])
        assert case["fastlstm_gflops"] > 0
        assert case["fastlstm_peak_fraction"] == pytest.approx(
            case["fastlstm_gflops"] / data["gemm_peak_gflops"]["1"])
        assert all(d < 1e-4 for d in case["max_rel_diff_vs_fastlstm"].values())
    assert len(data["latency"]) == len(bench.CELLS)
    assert len(data["ragged"]) == len(bench.CELLS) * len(bench.MODES)
    for r in data["ragged"]:
        T, B = r["shape"][:2]
        assert len(r["lengths"]) == B and all(1 <= n <= T for n in r["lengths"])
        assert r["tokens"] == sum(r["lengths"])
        assert {"fastlstm", "fastlstm_dense", "fastlstm_padded"} <= set(r["median_s"])


def test_cli_bench_forwards_its_arguments(capsys):
    assert cli.main(["bench", "--quick", "--quiet", "--no-peers", "--no-latency",
                     "--no-ragged", "--no-reference", "--cells", "rnn", "--modes", "fwd",
                     "--shapes", "3x2x4x5", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    header, rows = _table(out, bench.MODE_TITLES["fwd"])
    assert header == ["cell", "shape (TxBxIxH)", "fastlstm ms", "GFLOP/s", "% of SGEMM peak"]
    assert rows[0][:2] == ["rnn", "3x2x4x5"]
    assert bench.MODE_TITLES["fwdbwd"] not in out
    assert "one cell step" not in out and "ragged batch" not in out


@pytest.mark.parametrize("argv", [["--shapes", "10x2x3"], ["--shapes", "0x1x2x3"],
                                  ["--cells", "lstm,xyz"], ["--threads", "0"],
                                  ["--modes", "bwd"], ["--repeat", "0"]])
def test_bad_options_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2


def test_parse_shapes():
    assert bench.parse_shapes("100x1x64x64, 5X2x3x4") == [(100, 1, 64, 64), (5, 2, 3, 4)]


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_thread_settings_are_restored():
    import torch

    import fastlstm
    before = torch.get_num_threads()
    fast_before = getattr(fastlstm, "get_num_threads", lambda: None)()
    assert bench.main(["--quick", "--quiet", "--threads", "1", "--no-latency", "--no-ragged",
                       "--cells", "rnn", "--modes", "fwd", "--no-reference"]) == 0
    assert torch.get_num_threads() == before
    assert getattr(fastlstm, "get_num_threads", lambda: None)() == fast_before


@pytest.mark.skipif(not HAVE_ORT, reason="onnx / onnxruntime are not installed")
@pytest.mark.parametrize("cell", bench.CELLS)
def test_ort_model_matches_fastlstm(cell):
    """The PyTorch -> ONNX weight conversion (gate order, biases) is right."""
    runners = bench.make_runners(cell, "fwd", (7, 3, 5, 6), peers=("ort",),
                                 reference_ok=False)
    fast, ort = runners["fastlstm"], runners["ort"]
    np.testing.assert_allclose(ort.to_numpy(ort.fn()), fast.to_numpy(fast.fn()),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("cell", bench.CELLS)
@pytest.mark.parametrize("mode", bench.MODES)
def test_torch_runners_match_fastlstm(cell, mode):
    runners = bench.make_runners(cell, mode, (7, 3, 5, 6), peers=("torch",),
                                 reference_ok=False)
    fast, tr = runners["fastlstm"], runners["torch"]
    np.testing.assert_allclose(tr.to_numpy(tr.fn()), fast.to_numpy(fast.fn()),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_ragged_case_matches_torch_packed():
    opts = bench._finish_options(bench.build_parser().parse_args(
        ["--quick", "--peers", "torch", "--repeat", "1"]))
    r = bench.bench_ragged("lstm", "fwdbwd", (6, 5, 3, 4), 1, opts)
    assert r["max_rel_diff_vs_fastlstm"]["torch_packed"] < 1e-4
    assert r["dense_batch"] == max(1, round(r["tokens"] / 6))


def test_each_timed_call_follows_an_untimed_one_in_rotation():
    # every turn is an untimed call and then the timed one, and the turns
    # rotate: the log of calls shows pairs, each round starting one further on
    log = []
    fns = {name: (lambda name=name: log.append(name)) for name in ("a", "b", "c")}
    medians, samples, rounds, first, errors = bench.time_interleaved(fns, repeat=3, budget=0,
                                                                     lead_in=(0, 0))
    assert rounds == 3 and not errors and set(medians) == {"a", "b", "c"}
    assert all(len(s) == 3 for s in samples.values())
    assert log[:3] == ["a", "b", "c"]  # the warm-up calls
    turns = log[3:]
    assert len(turns) == 2 * 3 * 3
    pairs = [turns[i:i + 2] for i in range(0, len(turns), 2)]
    assert all(p[0] == p[1] for p in pairs)
    order = [p[0] for p in pairs]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_lead_in_calls_last_at_least_the_lead_in():
    # a turn's untimed calls go on for lead_in[0] seconds (lead_in[1] after
    # the reference), so that the spinning idle threads of the implementation
    # before are done; the timed call follows
    log = []
    fns = {name: (lambda name=name: log.append((name, time.perf_counter())))
           for name in ("reference", "b", "c")}
    bench.time_interleaved(fns, repeat=3, budget=0, lead_in=(0.01, 0.03))
    runs = []  # consecutive calls of one implementation
    for name, t in log:
        if runs and runs[-1][0] == name:
            runs[-1][1].append(t)
        else:
            runs.append((name, [t]))
    assert [len(r[1]) for r in runs[:3]] == [1, 1, 1]  # the warm-up calls
    turns = runs[3:]
    assert [r[0] for r in turns] == ["reference", "b", "c", "b", "c", "reference",
                                     "c", "reference", "b"]
    # the lead-in's clock starts after the call before it (the turn before's
    # timed call, or the last warm-up call), and the timed call starts once
    # the lead-in has run out: measured from that call, the bound holds
    # exactly (from the turn's own first call, a stall before it could eat
    # into the lead-in)
    for before, last, (name, stamps) in zip([None] + turns[:-1], runs[2:-1], turns):
        lead = 0.03 if before and before[0] == "reference" else 0.01
        assert len(stamps) >= 3 and stamps[-1] - last[1][-1] >= lead
