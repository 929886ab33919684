"""fastlstm.torch inside DistributedDataParallel: two gloo processes on loopback.

Each rank builds a small fastlstm.torch.LSTM model (from a rank-dependent seed,
so DDP's initial broadcast matters), trains it for a few SGD steps on its own
rank-dependent data, and checks after every backward that

- its local gradients (computed under ``no_sync``) differ from the other rank's,
  so the check below is not vacuous;
- the synchronised DDP gradients are identical on both ranks and equal the
  mean of the two ranks' local gradients;
- the parameters stay identical on both ranks after every optimizer step.

The workers run as plain subprocesses (a script written to a temporary file),
so the test does not depend on how pytest imports this module.
"""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

WORLD = 2
TIMEOUT = 120  # seconds for the whole run; it normally takes a few

WORKER = textwrap.dedent(r"""
    import datetime
    import os
    import sys

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    import fastlstm.torch as flt

    rank, world, port, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)


    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = flt.LSTM(3, 6, num_layers=2, batch_first=True, bidirectional=True,
                                dropout=0.25)
            self.cell = flt.GRUCell(12, 4)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            out, (h, c) = self.rnn(x)
            return self.head(self.cell(out[:, -1])).squeeze(-1)


    def gather(tensors):
        # the list of every rank's copy of each tensor: [[t_rank0, t_rank1], ...]
        result = []
        for t in tensors:
            bufs = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(bufs, t.contiguous())
            result.append(bufs)
        return result


    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
        model = Model().double()
        ddp = DDP(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        gen = torch.Generator().manual_seed(rank)  # rank-dependent data
        params = [p for p in model.parameters()]
        for step in range(3):
            x = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
            y = torch.randn(4, generator=gen, dtype=torch.float64)
            torch.manual_seed(step)  # the same dropout masks for the local and the DDP pass

            # local gradients, without synchronisation
            opt.zero_grad()
            with ddp.no_sync():
                nn.functional.mse_loss(ddp(x), y).backward()
            local = [p.grad.clone() for p in params]

            # synchronised gradients
            opt.zero_grad()
            torch.manual_seed(step)
            nn.functional.mse_loss(ddp(x), y).backward()
            synced = [p.grad.clone() for p in params]

            for (g0, g1), loc_all, g in zip(gather(synced), gather(local), synced):
                assert torch.equal(g0, g1), "DDP gradients differ across ranks"
                mean = sum(loc_all) / world
                torch.testing.assert_close(g, mean, rtol=1e-12, atol=1e-14)
            assert any(not torch.equal(a, b) for a, b in gather(local)), \
                "local gradients are the same on both ranks: the data is not rank-dependent"
            opt.step()
            for p0, p1 in gather([p.detach() for p in params]):
                assert torch.equal(p0, p1), "parameters differ across ranks after a step"
        with open(os.path.join(out_dir, f"rank{rank}.ok"), "w") as f:
            f.write("ok\n")
        # both ranks done before either tears gloo down: a rank that tears
        # down while its peer is still connected can be aborted by gloo
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # everything is checked and written: leave without the interpreter's
    # teardown, where gloo's threads can abort the process ("terminate called
    # without an active exception") after the work succeeded
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
""")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    import fastlstm
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastlstm.__file__)))
    script = tmp_path / "ddp_worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", FASTLSTM_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(WORLD), port,
                               str(tmp_path)], cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for r in range(WORLD)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:  # only our own workers, by handle
            if p.poll() is None:
                p.kill()
                p.communicate()
    report = "\n".join(f"--- rank {r} (exit {p.returncode}) ---\n{out}"
                       for r, (p, out) in enumerate(zip(procs, outputs)))
    assert all(p.returncode == 0 for p in procs), report
    for r in range(WORLD):
        assert (tmp_path / f"rank{r}.ok").exists(), report
