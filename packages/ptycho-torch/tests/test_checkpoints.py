"""Lightning checkpoints (issue 17): atomic writes, safe reading of ``resume_from``, exact resume.

The resume test kills a real training process with SIGKILL once a checkpoint of a later epoch is
on disk, resumes it from ``last.ckpt`` in a new process and compares the final weights bit for
bit with an uninterrupted run of the same seed (and checks that another seed gives other weights,
so the comparison can fail).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.errors import BundleError
from ptycho_torch.checkpoint_io import AtomicCheckpointIO, read_checkpoint
from ptycho_torch.config import ExecutionConfig
from ptycho_torch.model import build_model
from ptycho_torch.sampling import EpochSeededSampler
from ptycho_torch.training import train_model

CPU = ExecutionConfig(accelerator="cpu", enable_progress_bar=False)

TRAIN_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    import torch

    from ptycho_api.config import ModelConfig, TrainingConfig
    from ptycho_api.container import create_ptycho_data_container
    from ptycho_api.simulation import simulate_dataset
    from ptycho_torch.config import ExecutionConfig
    from ptycho_torch.model import build_model
    from ptycho_torch.training import train_model

    torch.set_num_threads(1)
    out, seed, resume = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "resume"
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1), nepochs=8, batch_size=4,
        n_groups=24, seed=seed, output_dir=out,
    )
    raw = simulate_dataset(n_images=24, N=64, seed=2)
    container = create_ptycho_data_container(raw, config)
    model = build_model(config.model, container.probe, container.intensity_scale, seed=seed)
    execution = ExecutionConfig(
        accelerator="cpu", enable_progress_bar=False, resume_from="last" if resume else None
    )
    history, _ = train_model(model, container, config, execution=execution)
    torch.save(model.state_dict(), out / "final.pt")
    (out / "final_history.json").write_text(json.dumps(history))
    """
)

KILL_AFTER_EPOCH = 2
"""The run is killed once ``last.ckpt`` holds this (0-based) epoch or a later one."""


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "train_run.py"
    if not script.is_file():
        script.write_text(TRAIN_SCRIPT)
    return script


def _train(script: Path, out: Path, seed: int, mode: str = "fresh") -> dict:
    """Run the training script to completion; returns its final state dict and history."""
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(seed), mode],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {
        "state": torch.load(out / "final.pt", weights_only=True),
        "history": json.loads((out / "final_history.json").read_text()),
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The seeded run (seed 5) trained without interruption in its own process."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    return _train(_script(tmp), tmp / "run", seed=5)


def test_a_killed_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit(uninterrupted, tmp_path):
    script = _script(tmp_path)
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "5", "fresh"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 600
    try:
        while not (last.is_file() and read_checkpoint(last)["epoch"] >= KILL_AFTER_EPOCH):
            assert proc.poll() is None, proc.stderr.read().decode()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint within 600 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = read_checkpoint(last)["epoch"]
    # The kill interrupted the run: epochs remain to train after the resume.
    assert killed_at < len(uninterrupted["history"]["loss"]) - 1, killed_at

    resumed = _train(script, out, seed=5, mode="resume")

    assert resumed["history"] == uninterrupted["history"]
    assert resumed["state"].keys() == uninterrupted["state"].keys()
    different = [
        k for k, v in uninterrupted["state"].items() if not torch.equal(v, resumed["state"][k])
    ]
    assert not different, different
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_another_seed_gives_other_weights(uninterrupted, tmp_path):
    other = _train(_script(tmp_path), tmp_path / "run", seed=6)
    assert any(not torch.equal(v, other["state"][k]) for k, v in uninterrupted["state"].items())


def test_sampler_order_is_a_function_of_seed_and_epoch():
    data = list(range(50))
    orders = {}
    for seed in (1, 2):
        for epoch in (0, 1, 7):
            sampler = EpochSeededSampler(data, seed)
            sampler.set_epoch(epoch)
            orders[seed, epoch] = list(sampler)
    assert all(sorted(order) == data for order in orders.values())
    assert len({tuple(order) for order in orders.values()}) == len(orders)
    again = EpochSeededSampler(data, 2)
    again.set_epoch(7)
    assert list(again) == list(again) == orders[2, 7]


# --- atomic writes ----------------------------------------------------------------------------


class _Unpicklable:
    """``torch.save`` of an object holding this raises during the write."""

    def __reduce__(self) -> tuple:
        raise RuntimeError("cannot pickle this")


def test_a_failed_write_leaves_the_previous_checkpoint_intact_and_no_temporary(tmp_path):
    checkpoint_io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint_io.save_checkpoint({"epoch": 1, "w": torch.arange(10.0)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="cannot pickle"):
        checkpoint_io.save_checkpoint(
            {"epoch": 2, "w": torch.ones(1000), "bad": _Unpicklable()}, path
        )
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    assert torch.equal(checkpoint_io.load_checkpoint(path)["w"], torch.arange(10.0))


def test_a_failed_first_write_leaves_no_file_under_the_final_name(tmp_path):
    path = tmp_path / "best-epoch=000.ckpt"
    with pytest.raises(RuntimeError):
        AtomicCheckpointIO().save_checkpoint({"bad": _Unpicklable()}, path)
    assert list(tmp_path.iterdir()) == []


FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import resource
    import signal
    import sys

    import torch

    from ptycho_torch.checkpoint_io import AtomicCheckpointIO

    # Files may not grow past 1 MiB: a 4 MiB checkpoint fails part-way, as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    from ptycho_api.errors import OutputError

    try:
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1 << 20)}, sys.argv[1])
    except OutputError as exc:  # exit 2 from the CLI; torch itself raised RuntimeError
        print("WRITE FAILED", exc)
    """
)


def _run_script(script: Path, text: str, *args: Path) -> subprocess.CompletedProcess[str]:
    """Run ``text`` as the Python script ``script`` in a child; it must exit 0."""
    script.write_text(text)
    proc = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_a_write_that_fails_part_way_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.arange(4.0)}, path)
    before = path.read_bytes()
    proc = _run_script(tmp_path / "full_disk.py", FULL_DISK_SCRIPT, path)
    assert "WRITE FAILED" in proc.stdout and "is the disk full?" in proc.stdout, proc.stdout
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full_disk.py", "last.ckpt"]


# --- reading resume_from ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_epoch(scan_64, tmp_path_factory) -> dict:
    """One epoch on 16 groups: a real ``last.ckpt`` to damage."""
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        nepochs=1,
        batch_size=8,
        n_groups=16,
        seed=3,
        output_dir=tmp_path_factory.mktemp("one_epoch"),
    )
    container = create_ptycho_data_container(scan_64, config)
    model = build_model(config.model, container.probe, container.intensity_scale, seed=3)
    _, trainer = train_model(model, container, config, execution=CPU)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    last = config.output_dir / "checkpoints" / "last.ckpt"
    return {"config": config, "container": container, "last": last.read_bytes()}


def _resume(one_epoch: dict, tmp_path: Path, data: bytes, resume_from: str = "last") -> None:
    """Write ``data`` as the checkpoint and resume a fresh 2-epoch run from it."""
    config = replace(one_epoch["config"], nepochs=2, output_dir=tmp_path / "run")
    ckpt = config.output_dir / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(data)
    container = one_epoch["container"]
    model = build_model(config.model, container.probe, container.intensity_scale, seed=3)
    execution = replace(CPU, resume_from="last" if resume_from == "last" else str(ckpt))
    train_model(model, container, config, execution=execution)


def _refused(one_epoch: dict, tmp_path: Path, data: bytes, match: str, **kwargs: str) -> str:
    with pytest.raises(BundleError, match=match) as info:
        _resume(one_epoch, tmp_path, data, **kwargs)
    message = str(info.value)
    assert "last.ckpt" in message and "\n" not in message, message
    # Refused before training: Lightning never started (no logs, no history).
    assert not (tmp_path / "run" / "lightning_logs").exists()
    assert not (tmp_path / "run" / "history.json").exists()
    return message


@pytest.mark.parametrize("resume_from", ["last", "path"])
def test_an_empty_checkpoint_is_a_bundle_error(one_epoch, tmp_path, resume_from):
    _refused(one_epoch, tmp_path, b"", "empty \\(0 bytes\\)", resume_from=resume_from)


def test_a_truncated_checkpoint_is_a_bundle_error(one_epoch, tmp_path):
    data = one_epoch["last"]
    _refused(one_epoch, tmp_path, data[: len(data) // 2], "truncated or corrupt")


def test_garbage_is_a_bundle_error(one_epoch, tmp_path):
    _refused(one_epoch, tmp_path, b"not a checkpoint\n" * 100, "truncated or corrupt")


class _Payload:
    """Unpickling this would create a directory: a checkpoint that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_with_code_is_refused_without_running_it(one_epoch, tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, path)
    message = _refused(one_epoch, tmp_path, path.read_bytes(), "refused to load")
    assert "mkdir" in message
    assert not marker.exists()


def test_a_weights_only_checkpoint_cannot_resume(one_epoch, tmp_path):
    checkpoint = torch.load(io.BytesIO(one_epoch["last"]), weights_only=True, map_location="cpu")
    del checkpoint["optimizer_states"]
    path = tmp_path / "weights.ckpt"
    torch.save(checkpoint, path)
    _refused(one_epoch, tmp_path, path.read_bytes(), "missing optimizer_states")


def test_another_models_checkpoint_is_a_bundle_error(one_epoch, tmp_path):
    config = replace(
        one_epoch["config"],
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=2),
        output_dir=tmp_path / "wide",
    )
    container = one_epoch["container"]
    model = build_model(config.model, container.probe, container.intensity_scale, seed=3)
    train_model(model, container, config, execution=CPU)
    data = (config.output_dir / "checkpoints" / "last.ckpt").read_bytes()
    _refused(one_epoch, tmp_path, data, "in the checkpoint, .* in the model")


def test_stale_temporaries_of_a_killed_write_are_removed_on_resume(one_epoch, tmp_path):
    stale = tmp_path / "run" / "checkpoints" / ".last.ckpt.abc123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"partial")
    config = replace(one_epoch["config"], nepochs=2, output_dir=tmp_path / "run")
    (config.output_dir / "checkpoints" / "last.ckpt").write_bytes(one_epoch["last"])
    container = one_epoch["container"]
    model = build_model(config.model, container.probe, container.intensity_scale, seed=3)
    history, _ = train_model(model, container, config, execution=replace(CPU, resume_from="last"))
    assert len(history["loss"]) == 2
    assert not stale.exists()


class _Bomb:
    """Unpickles to ``bytearray(3 GiB)``: a builtin that ``weights_only`` loading allows."""

    def __reduce__(self) -> tuple:
        return (bytearray, (3 << 30,))


BOMB_SCRIPT = textwrap.dedent(
    """
    import resource
    import sys

    # The issue's contract: 2 GiB of address space (torch imports in about 1 GiB of it).
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from ptycho_api.errors import BundleError
    from ptycho_torch.checkpoint_io import read_checkpoint

    try:
        read_checkpoint(sys.argv[1])
    except BundleError as exc:
        print("REFUSED", exc)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS semantics")
def test_a_checkpoint_that_allocates_gigabytes_is_a_bundle_error(tmp_path):
    """A checkpoint of a few hundred bytes whose pickle builds a 3 GiB bytearray (issue 17)."""
    buffer = io.BytesIO()
    torch.save({"epoch": 0}, buffer)
    with zipfile.ZipFile(buffer) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    pickled = next(name for name in members if name.endswith("/data.pkl"))
    members[pickled] = pickle.dumps(_Bomb(), protocol=2)
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert bomb.stat().st_size < 4096
    proc = _run_script(tmp_path / "bomb.py", BOMB_SCRIPT, bomb)
    assert "REFUSED" in proc.stdout and "bomb.ckpt" in proc.stdout, proc.stdout
