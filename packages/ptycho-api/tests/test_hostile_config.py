"""Hostile config files: YAML alias bombs, recursive aliases, 50,000-deep nesting, huge integers.

Each case is a real file read by ``load_config`` or by ``ptycho train --config``. Cases that hung
(or ate memory) before the limits existed run in a child process with a timeout and an
address-space limit, so that a regression fails instead of hanging the suite or the machine.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptycho_api.config import CONFIG_MAX_DEPTH, TrainingConfig, load_config
from ptycho_api.errors import ConfigError

# Interpreter start and `import ptycho_api` take 1-3 s on a loaded machine, the refusal itself
# milliseconds. Before the limits, the bomb below ran until memory was exhausted: 30 s separates
# the two with a wide margin.
CHILD_TIMEOUT_S = 30
# Enough for numpy/scipy/matplotlib imports; far less than the gigabytes a bomb's repr needs.
CHILD_ADDRESS_SPACE = 2 * 1024**3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def alias_bomb(key: str) -> str:
    """The "billion laughs": 9 anchors of 9 aliases each, 9**9 (387 million) values under ``key``."""
    lines = ['  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  - &{name} [{','.join(['*' + prev] * 9)}]")
    return f"{key}:\n" + "\n".join(lines) + "\n"


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb("lol"))  # an unknown key: the old loader stopped there, quickly
    assert bomb.stat().st_size < 1024
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: refused: more than 10,000 values") as info:
        load_config(bomb)
    # Composing ~90 nodes and refusing takes milliseconds; 2 s allows for a loaded machine.
    assert time.monotonic() - start < 2
    assert "\n" not in str(info.value)


def test_alias_bomb_under_a_field_is_refused_in_a_child(tmp_path: Path) -> None:
    # Under a real field the old loader built the bomb and the type error then repr'd all of it.
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb("nepochs"))
    code = (
        "import sys\n"
        "from ptycho_api.config import load_config\n"
        "from ptycho_api.errors import ConfigError\n"
        "try:\n"
        "    load_config(sys.argv[1])\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(bomb)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        preexec_fn=_limit_memory,
    )
    assert res.returncode == 2 and "refused: more than 10,000 values" in res.stdout, res


def test_ordinary_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train_data_file: &f data/scan.npz\ntest_data_file: *f\nnepochs: 3\n")
    config = load_config(path)
    assert config.train_data_file == config.test_data_file == Path("data/scan.npz")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("nepochs: &x [1, *x]\n")
    with pytest.raises(ConfigError, match="alias refers to a node that contains it"):
        load_config(path)


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        # 50,000 levels: 50 times Python's recursion limit of 1000.
        (".yaml", "nepochs: " + "[" * 50_000 + "]" * 50_000 + "\n"),
        (".json", '{"nepochs": ' + "[" * 50_000 + "]" * 50_000 + "}"),
        # Just over the limit: parsers manage it, the limit does not.
        (".json", '{"nepochs": ' + "[" * CONFIG_MAX_DEPTH + "]" * CONFIG_MAX_DEPTH + "}"),
        (".yaml", "nepochs: " + "[" * CONFIG_MAX_DEPTH + "]" * CONFIG_MAX_DEPTH + "\n"),
    ],
    ids=["yaml-50000", "json-50000", "json-limit", "yaml-limit"],
)
def test_deep_nesting_is_a_config_error(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"refused: nested more than {CONFIG_MAX_DEPTH} levels"):
        load_config(path)


def test_nesting_within_the_limit_reaches_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    depth = CONFIG_MAX_DEPTH - 1  # the top-level object is the first level
    path.write_text('{"nepochs": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(ConfigError, match="nepochs: expected an integer"):
        load_config(path)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_huge_integer_is_a_config_error(tmp_path: Path, suffix: str) -> None:
    # Python refuses to convert text over 4,300 digits to an int (ValueError, not ConfigError).
    path = tmp_path / f"c{suffix}"
    digits = "9" * 5000
    path.write_text(f"nepochs: {digits}\n" if suffix == ".yaml" else f'{{"nepochs": {digits}}}')
    with pytest.raises(ConfigError, match="not valid"):
        load_config(path, TrainingConfig)


def test_cli_train_refuses_the_bomb_with_exit_2(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb("nepochs"))
    exe = shutil.which("ptycho", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "ptycho_api.cli.main"]
    res = subprocess.run(
        [*cmd, "train", "--config", str(bomb), "--train-data", "missing.npz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        preexec_fn=_limit_memory,
    )
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused: more than 10,000 values" in lines[0], res.stderr
