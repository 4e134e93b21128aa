"""caloforge.stream: shuffled chunks of real HDF5 files, the shuffle buffer, held-out chunks,
streaming statistics, training from a stream (also under a real 2-process torchrun), bad input
at scale, and the streamed `caloforge train` on a simulated dataset-2 file, killed and resumed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from caloforge.data import ShowerSet, read_showers, write_showers
from caloforge.errors import CaloforgeError, DataError, GeometryError
from caloforge.geometry import Geometry
from caloforge.stream import (
    FileSource,
    InMemorySource,
    Moments,
    Rows,
    TensorBatches,
    as_source,
)
from caloforge.training import TrainConfig, fit
from tests.conftest import caloforge_exe, make_showers, run_cli

REPO = Path(__file__).resolve().parents[1]


def _file(tmp_path: Path, n: int = 700, dataset: str = "1-photons", name: str = "a.h5",
          seed: int = 0) -> Path:
    """A file whose E_inc are the row numbers + 1 (MeV), so every shower is identifiable."""
    s = make_showers(dataset, n, seed=seed)
    path = tmp_path / name
    with h5py.File(path, "w") as fh:  # HDF5 chunks of 100 rows
        fh.create_dataset("incident_energies",
                          data=(np.arange(1, n + 1, dtype=np.float64) + 1e6 * seed)[:, None])
        fh.create_dataset("showers", data=s.showers, chunks=(min(100, n), s.showers.shape[1]),
                          compression="gzip")
    return path


def _src(paths: object, **kw: object) -> FileSource:
    """A FileSource reading one HDF5 chunk (100 rows) per unit."""
    return FileSource(paths, unit_bytes=1, **kw)  # type: ignore[arg-type]


def _ids(batches) -> np.ndarray:
    return np.concatenate([b.e_inc for b in batches]).astype(np.int64)


def test_every_shower_once_per_epoch_fresh_order(tmp_path: Path) -> None:
    src = _src(_file(tmp_path), seed=3, buffer_bytes=200 * 368 * 4)
    assert len(src) == 700 and len(src.units) > 1
    e0, e1 = _ids(src.batches(0, 64)), _ids(src.batches(1, 64))
    assert sorted(e0) == list(range(1, 701)) == sorted(e1)
    assert not np.array_equal(e0, e1)  # a fresh order every epoch
    assert np.array_equal(e0, _ids(src.batches(0, 64)))  # reproducible (resume)
    # rows are mixed across chunks inside one batch (the shuffle buffer)
    first = next(iter(src.batches(0, 64))).e_inc
    assert len({int(x - 1) // src.units[0].rows for x in first}) > 1
    assert sum(1 for _ in src.batches(0, 64)) == src.steps(64) == 11
    assert np.array_equal(_ids(src.batches(0, 64, shuffle=False)), np.arange(1, 701))


def test_ranks_read_disjoint_chunks_with_equal_steps(tmp_path: Path) -> None:
    src = _src(_file(tmp_path), seed=1)
    parts = [list(src.batches(2, 64, rank=r, world=2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == src.steps(64, world=2)
    ids = [set(_ids(p)) for p in parts]
    assert not ids[0] & ids[1]
    # each rank reads whole chunks of its own
    chunk = src.units[0].rows
    assert not {(i - 1) // chunk for i in ids[0]} & {(i - 1) // chunk for i in ids[1]}


def test_split_is_by_chunk_and_list_of_files(tmp_path: Path) -> None:
    a, b = _file(tmp_path, 500, name="a.h5"), _file(tmp_path, 300, name="b.h5", seed=1)
    assert isinstance(as_source([a, b]), FileSource)
    src = _src([a, b], seed=0)
    assert len(src) == 800 and len(src.units) == 8
    train, val = src.split(0.25, seed=5)
    tr, va = set(_ids(train.batches(0, 100))), set(_ids(val.batches(0, 100)))
    assert not tr & va and len(tr | va) == 800
    assert 0.2 <= len(va) / 800 <= 0.4
    assert len(val) == len(va) and len(train) == len(tr)


def test_in_memory_source_matches_content(tmp_path: Path) -> None:
    s = make_showers(n=130)
    src = InMemorySource(s, seed=2)
    got = list(src.batches(0, 32))
    assert sum(len(b) for b in got) == 130 and src.steps(32) == len(got) == 5
    assert np.allclose(np.sort(np.concatenate([b.showers.sum(1) for b in got])),
                       np.sort(s.showers.sum(1)))


def test_moments_match_torch_and_merge() -> None:
    x = torch.randn(1000, 5, dtype=torch.float64) * 3 + 7
    m = Moments()
    for part in x.split(77):
        m.update(part)
    assert torch.allclose(m.mean, x.mean(0)) and torch.allclose(m.std, x.std(0))


def test_fit_from_a_stream_converges(tmp_path: Path) -> None:
    """training.fit from a TensorBatches stream: a linear fit of E_tot from layer energies."""
    path = _file(tmp_path, 600)
    geo = Geometry.preset("1-photons")

    def prep(chunk: ShowerSet, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        x = torch.as_tensor(geo.layer_energies(chunk.showers), dtype=torch.float64) / 1e3
        return x, x.sum(1, keepdim=True)

    train, val = _src(path, seed=0).split(0.2)
    cfg = TrainConfig.from_dict({"epochs": 20, "batch_size": 32, "lr": 3e-2, "device": "cpu",
                                 "progress": False})
    torch.manual_seed(0)
    hist = fit(nn.Linear(5, 1), lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
               TensorBatches(train, prep, 0), TensorBatches(val, prep, 1), cfg, tmp_path / "r")
    assert hist["train_loss"][-1] < 0.05 * hist["train_loss"][0]
    assert hist["val_loss"][-1] < 0.05 * hist["val_loss"][0]
    assert (tmp_path / "r" / "final.pt").exists()


# --------------------------------------------------------------------------------------------
# bad input at scale


def test_file_list_mixing_geometries_is_one_line(tmp_path: Path) -> None:
    a = _file(tmp_path, 50, name="a.h5")
    b = tmp_path / "b.h5"
    write_showers(b, make_showers("1-pions", 20))
    with pytest.raises(GeometryError) as info:
        FileSource([a, b])
    msg = str(info.value)
    assert "\n" not in msg and str(b) in msg and "368" in msg and "533" in msg


def test_truncated_and_damaged_files_are_one_line(tmp_path: Path) -> None:
    good = _file(tmp_path, 700)
    size = good.stat().st_size
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: size * 2 // 3])  # truncated mid-chunk
    with pytest.raises(DataError) as info:
        FileSource(cut)
    msg = str(info.value)
    assert "\n" not in msg and str(cut) in msg and "truncated" in msg
    assert f"{size * 2 // 3} bytes" in msg and f"{size} bytes" in msg
    # a chunk damaged in place (same size): found when that chunk is read, with its rows
    with h5py.File(good, "r") as fh:
        off = fh["showers"].id.get_chunk_info(3).byte_offset
    bad = tmp_path / "bad.h5"
    raw = bytearray(good.read_bytes())
    raw[off:off + 64] = b"\xff" * 64
    bad.write_bytes(bytes(raw))
    src = _src(bad, seed=0)
    with pytest.raises(DataError) as info:
        list(src.batches(0, 64))
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and "rows 300..400" in msg


def test_full_disk_during_streamed_write_leaves_nothing(tmp_path: Path) -> None:
    """A size-limited process (RLIMIT_FSIZE, like a full disk) writing showers chunk by chunk:
    one line naming the file and what was expected, and no partial output."""
    script = textwrap.dedent('''
        import resource, signal, sys
        import numpy as np
        from caloforge.data import ShowerWriter
        from caloforge.errors import CaloforgeError
        from caloforge.geometry import Geometry
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (6_000_000, 6_000_000))
        geo = Geometry.preset("2")
        rng = np.random.default_rng(0)
        try:
            with ShowerWriter(sys.argv[1], geo, compression=None) as w:
                for _ in range(20):
                    w.append(np.full(100, 1e4), rng.random((100, geo.n_voxels)))
        except CaloforgeError as exc:
            print("ERROR", exc)
    ''')
    out = tmp_path / "gen.h5"
    res = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    line = res.stdout.strip()
    assert line.startswith("ERROR") and "\n" not in line and str(out) in line, line
    assert "expected" in line and "found" in line and "rows 100..200" in line
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


# --------------------------------------------------------------------------------------------
# torchrun: disjoint chunks per rank, identical weights


DDP_SCRIPT = textwrap.dedent('''
    import os, sys
    import numpy as np
    import torch
    from torch import nn
    import torch.distributed as dist
    from caloforge.geometry import Geometry
    from caloforge.stream import FileSource, Moments, TensorBatches, stats_chunks
    from caloforge.training import TrainConfig, fit

    rank = int(os.environ["RANK"])
    geo = Geometry.preset("1-photons")
    src = FileSource(sys.argv[2], seed=0, unit_bytes=1)
    m = Moments()
    n_seen = 0
    for chunk in stats_chunks(src):  # this rank's share; merged below
        m.update(torch.as_tensor(chunk.e_inc)[:, None])
        n_seen += len(chunk)
    m.all_reduce()
    seen = []

    def prep(chunk, gen):
        x = torch.as_tensor(geo.layer_energies(chunk.showers), dtype=torch.float64) / 1e3
        return x, x.sum(1, keepdim=True), torch.as_tensor(chunk.e_inc)

    def loss(mod, b):  # the showers in training order (epochs are read ahead in threads)
        seen.append(b[2].numpy().copy())
        return ((mod(b[0]) - b[1]) ** 2).mean()

    torch.manual_seed(10 + rank)
    module = nn.Linear(5, 1)
    cfg = TrainConfig.from_dict({"epochs": 3, "batch_size": 64, "lr": 1e-2, "device": "cpu",
                                 "progress": False})
    hist = fit(module, loss, TensorBatches(src, prep, 0), None, cfg, sys.argv[1])
    torch.save({"state": module.state_dict(), "hist": hist, "seen": seen, "n": m.n,
                "mean": m.mean, "n_seen": n_seen},
               os.path.join(sys.argv[1], f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> list[str]:
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--nproc_per_node=2", "--nnodes=1", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}", *args]


def test_torchrun_streamed_ranks_read_disjoint_chunks(tmp_path: Path) -> None:
    data = _file(tmp_path, 800)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(_torchrun(str(script), str(tmp_path), str(data)), capture_output=True,
                         text=True, env=env, timeout=180, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    r = [torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in range(2)]
    for k in r[0]["state"]:
        assert torch.equal(r[0]["state"][k], r[1]["state"][k])
    assert r[0]["hist"]["train_loss"] == r[1]["hist"]["train_loss"]
    # statistics: each rank read its share, the merged moments cover the whole file
    assert r[0]["n_seen"] + r[1]["n_seen"] == 800 == r[0]["n"] == r[1]["n"]
    assert float(r[0]["mean"][0]) == pytest.approx(400.5)
    # every epoch the ranks' showers are disjoint (3 epochs of training batches each)
    steps = _src(data).steps(64, world=2)
    for epoch in range(3):
        ids = [set(np.concatenate(x["seen"][epoch * steps:(epoch + 1) * steps]).astype(int))
               for x in r]
        assert ids[0] and ids[1] and not ids[0] & ids[1]


# --------------------------------------------------------------------------------------------
# the CLI end to end on dataset 2: streamed training, killed, resumed; generation


def test_cli_streamed_dataset2_killed_and_resumed(tmp_path: Path) -> None:
    data = tmp_path / "ds2.h5"
    res = run_cli("simulate", "--dataset", "2", "-n", "1200", "--seed", "1", "-o", data)
    assert res.returncode == 0, res.stderr
    config = REPO / "configs" / "caloman" / "2-cpu.yaml"
    run = tmp_path / "run"
    args = ["train", "--model", "caloman", "--config", str(config), "--data", str(data),
            "--quiet", "-o", str(run)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*caloforge_exe(), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "autoencoder_last.pt").exists():  # killed in the second stage
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model.pt").exists()
    assert (run / "energy_flow_final.pt").exists()
    done = torch.load(run / "energy_flow_final.pt", weights_only=False)["history"]
    res = run_cli(*args, "--resume", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "streamed" in res.stdout and (run / "model.pt").exists()
    ef = torch.load(run / "energy_flow_final.pt", weights_only=False)
    assert ef["history"]["train_loss"] == done["train_loss"]  # the finished stage: not retrained
    gen = tmp_path / "gen.h5"
    res = run_cli("generate", "--checkpoint", run / "model.pt", "--energies-from", data,
                  "-n", "50", "--quiet", "-o", gen)
    assert res.returncode == 0, res.stderr[-2000:]
    out = read_showers(gen)
    assert out.showers.shape == (50, 6480) and out.showers.sum() > 0


def test_cli_mixed_geometry_file_list_one_line(tmp_path: Path) -> None:
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_showers(a, make_showers("2", 30))
    write_showers(b, make_showers("1-photons", 30))
    res = run_cli("train", "--model", "caloman", "--config",
                  REPO / "configs" / "caloman" / "2-cpu.yaml", "--data", a, b, "-o",
                  tmp_path / "run")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert "\n" not in err and str(b) in err and "6480" in err and "368" in err
    assert not (tmp_path / "run").exists()


def test_errors_are_caloforge_errors() -> None:
    with pytest.raises(CaloforgeError):
        FileSource([])


@pytest.mark.slow
def test_cli_streamed_dataset3_two_files(tmp_path: Path) -> None:
    """The dataset-3 recipe end to end on two simulated files (like the official 2 x 50k)."""
    files = [tmp_path / "ds3_1.h5", tmp_path / "ds3_2.h5"]
    for seed, path in enumerate(files, 1):
        res = run_cli("simulate", "--dataset", "3", "-n", "300", "--seed", str(seed), "-o", path)
        assert res.returncode == 0, res.stderr
    res = run_cli("train", "--model", "caloman", "--config",
                  REPO / "configs" / "caloman" / "3-cpu.yaml", "--data", *files, "--epochs",
                  "1", "--quiet", "-o", tmp_path / "run", timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "streamed from 2 file(s)" in res.stdout
    res = run_cli("generate", "--checkpoint", tmp_path / "run" / "model.pt", "--energies-from",
                  files[1], "-n", "20", "--quiet", "-o", tmp_path / "gen.h5")
    assert res.returncode == 0, res.stderr[-2000:]
    assert read_showers(tmp_path / "gen.h5").showers.shape == (20, 40500)


@pytest.mark.parametrize("inline", [False, True])
def test_read_ahead_epochs_equal_epochs_read_one_by_one(tmp_path: Path, inline: bool) -> None:
    """Read-ahead or not, preprocessing in the training thread or in a background one: the
    same batches with the same preprocessing noise."""
    src = _src(_file(tmp_path), seed=4, buffer_bytes=200 * 368 * 4)

    def prep(chunk: ShowerSet, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        return torch.as_tensor(chunk.e_inc), torch.rand(len(chunk), generator=gen)

    ahead = TensorBatches(src, prep, 1, inline=inline)
    alone = TensorBatches(src, prep, 1, inline=not inline)
    for epoch in range(3):  # the next epoch is read while this one is consumed
        a = list(ahead.batches(epoch, 64))
        b = list(alone.batches(epoch, 64, read_ahead=False))
        assert len(a) == len(b) == src.steps(64)
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    assert ahead._ahead is not None
    held = ahead._ahead[1]
    thread = held._it._thread if inline else held._thread  # inline: the source's reader
    ahead.close()
    assert ahead._ahead is None and not thread.is_alive()


def test_bounded_heap_applies_on_linux_glibc() -> None:
    from caloforge.stream import bounded_heap

    applied = bounded_heap(1 << 20)
    assert applied == (sys.platform.startswith("linux") and
                       os.confstr("CS_GNU_LIBC_VERSION") is not None)


def test_cli_low_memory_trains_streamed(tmp_path: Path) -> None:
    data = write_showers(tmp_path / "ds2.h5", make_showers("2", 120, seed=3))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(textwrap.dedent("""
        model: caloman
        dataset: '2'
        latent_dim: 4
        hidden: [16]
        network: {type: layered, hidden: [8], code: 2, embed: 2}
        energy_flow: {type: coupling, transforms: 2, bins: 4, hidden: [16]}
        latent_flow: {type: coupling, transforms: 2, bins: 4, hidden: [16]}
        training:
          energy_flow: {epochs: 1, batch_size: 64, device: cpu}
          autoencoder: {epochs: 1, batch_size: 32, device: cpu}
          latent_flow: {epochs: 1, batch_size: 64, device: cpu}
    """))
    res = run_cli("train", "--model", "caloman", "--config", cfg, "--data", data, "--stream",
                  "on", "--low-memory", "--quiet", "-o", tmp_path / "run")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "streamed" in res.stdout and (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("capacity", [1, 7, 100])
def test_rows_equal_cat_of_the_parts_whatever_the_capacity(capacity: int) -> None:
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(int(k), 3, generator=gen) for k in (5, 1, 0, 12, 4)]
    rows = Rows(capacity)
    for p in parts:
        rows.add(p)
    assert torch.equal(rows.tensor(), torch.cat(parts))
    assert Rows(4).tensor().shape == (0, 0)
