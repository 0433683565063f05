"""Defaults a user can trust: --neighbor-count, defaults in --help, typo hints, provenance.

CLI behaviour runs the real ``ptycho`` console script on these sources. No backend is installed
in this session, so a training command that passes validation stops at backend selection: that
message proves the options were accepted and the config validated.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from cli_run import ptycho

from ptycho_api.cli.main import HelpFormatter, build_parser
from ptycho_api.cli.outputs import file_record, provenance_record
from ptycho_api.config import (
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    load_config,
    save_config,
)
from ptycho_api.errors import ConfigError

NO_BACKEND = "no PtychoPINN backend is installed"


def error_line(res: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a run that must exit 2 without a traceback."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return errors[0]


# ---- --neighbor-count and the gridsize 3 message --------------------------------------------


@pytest.mark.parametrize("command", [["train", "--train-data", "x.npz"], ["demo"]])
def test_gridsize_3_error_says_which_option_to_set(tmp_path: Path, command: list[str]) -> None:
    line = error_line(ptycho(*command, "--gridsize", "3", cwd=tmp_path))
    assert "training.neighbor_count" in line and "found 4" in line
    assert "set neighbor_count to 9 or more" in line and "--neighbor-count 9" in line


@pytest.mark.parametrize("command", [["train", "--train-data", "x.npz"], ["demo"]])
def test_neighbor_count_flag_lets_gridsize_3_validate(tmp_path: Path, command: list[str]) -> None:
    line = error_line(ptycho(*command, "--gridsize", "3", "--neighbor-count", "9", cwd=tmp_path))
    assert NO_BACKEND in line


def test_neighbor_count_flag_sets_the_config_field(tmp_path: Path) -> None:
    # The flag, not the default, is what validation sees.
    args = ("train", "--train-data", "x.npz", "--gridsize", "2", "--neighbor-count", "3")
    line = error_line(ptycho(*args, cwd=tmp_path))
    assert "training.neighbor_count" in line and "found 3" in line and "4 or more" in line


def test_gridsize_3_from_a_config_file_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "train.yaml").write_text("model:\n  gridsize: 3\n")
    args = ("train", "--train-data", "x.npz", "--config", "train.yaml")
    line = error_line(ptycho(*args, cwd=tmp_path))
    assert "train.yaml: training.neighbor_count" in line
    assert "set neighbor_count to 9 or more" in line
    (tmp_path / "train.yaml").write_text("neighbor_count: 9\nmodel:\n  gridsize: 3\n")
    assert NO_BACKEND in error_line(ptycho(*args, cwd=tmp_path))


# ---- defaults in --help ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "train",
            [
                "nepochs (default 50)",
                "(default 16)",
                "(default 512)",
                "(default 4)",
                "(default training_outputs)",
                "(default 1e9)",
                "(default 0)",
            ],
        ),
        (
            "demo",
            [
                "nepochs (default 16)",
                "(default ptycho-demo)",
                "(default 7)",
                "(default grid)",
                "(default auto)",
                "(default disk on the grid scan, defocused on the random scan)",
                "(default 4096 on the grid scan, --n-images on the random scan)",
            ],
        ),
        (
            "reconstruct",
            ["(default: 64 on a CPU", "default inference_outputs", "(default auto", "(default 0)"],
        ),
    ],
)
def test_help_shows_the_defaults(tmp_path: Path, command: str, expected: list[str]) -> None:
    res = ptycho(command, "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())  # argparse wraps help text at the terminal width
    for phrase in expected:
        assert phrase in text, (phrase, res.stdout)


def test_no_help_shows_default_none_or_false(tmp_path: Path) -> None:
    commands = ("simulate", "convert", "train", "reconstruct", "evaluate", "inspect", "backends")
    for command in (*commands, "demo"):
        res = ptycho(command, "--help", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        for noise in ("default None", "default: None", "default False", "default: False"):
            assert noise not in res.stdout, (command, noise)


def test_an_option_with_a_default_gets_it_appended() -> None:
    # Any option a subcommand gains later shows its default without writing it into the help.
    for command in build_parser().commands.values():
        assert command.formatter_class is HelpFormatter
        command.add_argument("--widgets", type=int, default=3, help="widgets per run")
        command.add_argument("--label", help="a name")
        text = " ".join(command.format_help().split())
        assert "widgets per run (default 3)" in text
        assert "a name (default" not in text


# ---- "did you mean" for an unknown option -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["train", "--train-data", "x.npz", "--epohcs", "3"],
            "ptycho train: error: unrecognized arguments: --epohcs 3; did you mean --epochs?",
        ),
        (
            ["train", "--train-data", "x.npz", "--neighbour-count", "9"],
            "did you mean --neighbor-count?",
        ),
        (["simulate", "--output", "o.npz", "--n-imgs", "5"], "did you mean --n-images?"),
        (
            ["demo", "--gird-size", "2", "--sed=3"],
            "did you mean --gridsize for --gird-size, --seed for --sed?",
        ),
    ],
)
def test_unknown_option_suggests_the_closest(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    line = error_line(ptycho(*args, cwd=tmp_path))
    assert expected in line, line
    assert not (tmp_path / "ptycho-demo").exists()  # refused before anything is created


@pytest.mark.parametrize("option", ["--n-images", "--n-test"])
def test_demo_refuses_random_scan_sizes_on_the_grid_scan(tmp_path: Path, option: str) -> None:
    res = ptycho("demo", option, "64", cwd=tmp_path)
    line = error_line(res)
    assert res.returncode == 2, res.stderr
    assert f"{option}: expected only with --scan random" in line and "found 64" in line, line
    assert not (tmp_path / "ptycho-demo").exists()  # refused before anything is created


def test_unknown_option_without_a_close_match_has_no_hint(tmp_path: Path) -> None:
    line = error_line(ptycho("backends", "--bogus", cwd=tmp_path))
    assert line == "ptycho backends: error: unrecognized arguments: --bogus"


# ---- provenance -------------------------------------------------------------------------------


def test_file_record_hashes_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * 2**20 + 7)  # over one read block
    (tmp_path / "scan.npz").write_bytes(data)
    monkeypatch.chdir(tmp_path)
    record = file_record(Path("scan.npz"))
    assert record == {
        "path": str(tmp_path.resolve() / "scan.npz"),
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_provenance_names_files_versions_and_command(tmp_path: Path) -> None:
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    train.write_bytes(b"train bytes")
    test.write_bytes(b"test")
    config = TrainingConfig(train_data_file=train, test_data_file=test)
    command = ["ptycho", "train", "--train-data", str(train)]
    record = provenance_record(config, command)
    assert record["command"] == command
    assert (
        record["data_files"]["train_data_file"]["sha256"]
        == hashlib.sha256(b"train bytes").hexdigest()
    )
    assert record["data_files"]["test_data_file"]["size_bytes"] == 4
    assert record["packages"]["ptycho-api"] == metadata.version("ptycho-api")
    assert "numpy" in record["packages"] and record["python"] and record["created_utc"]
    no_test = provenance_record(TrainingConfig(train_data_file=train), command)
    assert list(no_test["data_files"]) == ["train_data_file"]


def test_config_with_absolute_data_paths_loads_again(tmp_path: Path) -> None:
    # What ptycho train writes to config.yaml must stay a valid --config file.
    config = TrainingConfig(train_data_file=(tmp_path / "a.npz").resolve(), output_dir=tmp_path)
    loaded = load_config(save_config(config, tmp_path / "config.yaml"), TrainingConfig)
    assert loaded.train_data_file == config.train_data_file
    assert loaded.train_data_file.is_absolute()


# ---- --neighbor-count and --data-kind on reconstruct ------------------------------------------


def test_reconstruct_offers_neighbor_count_and_data_kind(tmp_path: Path) -> None:
    res = ptycho("reconstruct", "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "--neighbor-count" in text and "(default max(4, gridsize**2) of the archive's" in text
    assert "--data-kind {auto,counts,amplitudes,intensities}" in text
    train = " ".join(ptycho("train", "--help", cwd=tmp_path).stdout.split())
    assert "--data-kind {auto,counts,amplitudes,intensities}" in train


def test_inference_neighbor_count_error_names_the_reconstruct_flag() -> None:
    config = InferenceConfig(model=ModelConfig(gridsize=3), neighbor_count=4)
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert "inference.neighbor_count" in str(info.value)
    assert "(ptycho reconstruct: --neighbor-count 9)" in str(info.value)


# ---- --no-early-stopping ----------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [((), True), (("--no-early-stopping",), False)])
def test_no_early_stopping_flag_sets_the_config_field(
    tmp_path: Path, flags: tuple[str, ...], expected: bool
) -> None:
    from ptycho_api.cli.train import build_config

    config_file = tmp_path / "c.yaml"
    save_config(TrainingConfig(nepochs=7), config_file)
    parser = build_parser()
    args = parser.parse_args(
        ["train", "--train-data", "x.npz", "--config", str(config_file), *flags]
    )
    config = build_config(args)
    # The file's other values stay; the flag alone decides early stopping.
    assert (config.nepochs, config.early_stopping) == (7, expected)


# ---- --stitch on train, demo and reconstruct ---------------------------------------------------


@pytest.mark.parametrize("command", ["train", "demo", "reconstruct"])
def test_stitch_defaults_to_probe_weighting(tmp_path: Path, command: str) -> None:
    res = ptycho(command, "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "--stitch {probe,crop}" in text and "(default probe)" in text
    bad = ptycho(command, "--stitch", "median", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'median'" in bad.stderr


@pytest.mark.parametrize("M", [0, 65])
def test_a_crop_outside_the_pattern_is_refused_before_any_work(M: int) -> None:
    from ptycho_api.cli.train import check_crop

    with pytest.raises(ConfigError, match=rf"-M: expected .* in \[1, 64\] pixels .*; found {M}$"):
        check_crop(M, 64)
    check_crop(64, 64)
