"""Hostile legacy pickles: small archives that would hang, exhaust the stack or allocate gigabytes.

Each archive is a real file. Those that hung or allocated gigabytes before the unpickling budget
existed are opened in a child process with a timeout and an address-space limit, so that a
regression fails the test instead of hanging the suite or the machine.
"""

from __future__ import annotations

import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import dill
import numpy as np
import pytest
from bundle_helpers import write_zip

from ptycho_bundle import BundleError, BundleLimits, format_inspection, inspect, load_bundle

LEGACY_PARAMS = {"N": 64, "gridsize": 1, "intensity_scale": 812.5}
MANIFEST = pickle.dumps({"models": ["diffraction_to_obj"], "version": "1.0"})

# The child needs about 1 s to import numpy and h5py; a refusal takes milliseconds after that.
# 60 s is far beyond both on a loaded CI machine, and far below "never" (a repr of 2**60
# elements, or hashing a tuple that expands to 2**60 leaves).
CHILD_TIMEOUT_S = 60
# numpy and h5py map a few hundred MiB of address space; 1.5 GiB leaves room for them and for
# every legitimate test archive, and is half of the 3 GiB a bytearray bomb asks for.
CHILD_ADDRESS_SPACE = 1536 * 1024**2


def _archive(path: Path, *, manifest: bytes = MANIFEST, params: bytes | None = None) -> Path:
    members = {"manifest.dill": manifest}
    if params is not None:
        members["diffraction_to_obj/params.dill"] = params
    return write_zip(path / "wts.h5.zip", members.items())


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def _load_in_child(path: Path) -> tuple[int, str, float]:
    """``load_bundle(path)`` in a child python: (exit code, output, seconds); 2 means BundleError."""
    code = (
        "import sys\n"
        "from ptycho_bundle import BundleError, load_bundle\n"
        "try:\n"
        "    load_bundle(sys.argv[1])\n"
        "except BundleError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        preexec_fn=_limit_memory,
    )
    return res.returncode, res.stdout + res.stderr, time.monotonic() - start


def _shared_list_dag(levels: int) -> list:
    """A list of two references to a list of two references ... : 2**levels leaves in ``repr``."""
    node: list = []
    for _ in range(levels):
        node = [node, node]
    return node


def _tuple_dag_as_dict_key(levels: int) -> bytes:
    """Protocol-2 pickle of ``{t: 1}`` where ``t`` expands to 2**levels tuples (built by hand:
    Python itself would hang hashing ``t`` to make the dict)."""
    out = bytearray(b"\x80\x02})q\x000")  # {}, (), memo 0, pop
    for i in range(1, levels + 1):
        out += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]) + b"0"
    out += b"h" + bytes([levels]) + b"K\x01s."  # get t, 1, SETITEM: hashes t
    return bytes(out)


def test_shared_reference_dag_is_refused_quickly(tmp_path: Path) -> None:
    # 60 levels pickle to under 500 bytes; printing the manifest used to build a 2**60 repr.
    manifest = pickle.dumps({"models": ["diffraction_to_obj"], "version": _shared_list_dag(60)})
    assert len(manifest) < 600
    path = _archive(tmp_path, manifest=manifest, params=pickle.dumps(LEGACY_PARAMS))
    code, out, seconds = _load_in_child(path)
    assert code == 2, out
    assert "'manifest.dill'" in out and "max_pickle_nodes" in out, out
    assert len(out.strip().splitlines()) == 1, out


def test_shared_tuple_used_as_dict_key_is_refused_before_hashing(tmp_path: Path) -> None:
    # Hashing happens inside the C unpickler, so only the opcode simulation can stop it.
    path = _archive(tmp_path, manifest=_tuple_dag_as_dict_key(60))
    code, out, _ = _load_in_child(path)
    assert code == 2 and "max_pickle_nodes" in out, out


@pytest.mark.parametrize(
    "bomb",
    [
        # bytearray(3 * 2**30) through builtins and through dill's _load_type: 30-odd bytes each.
        b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\xc0\x85R.",
        b"\x80\x02cdill._dill\n_load_type\nX\t\x00\x00\x00bytearray\x85RJ\x00\x00\x00\xc0\x85R.",
    ],
    ids=["builtins", "dill"],
)
def test_bytearray_from_a_size_is_refused(tmp_path: Path, bomb: bytes) -> None:
    path = _archive(tmp_path, params=pickle.dumps(LEGACY_PARAMS), manifest=bomb)
    assert path.stat().st_size < 1000
    code, out, _ = _load_in_child(path)
    assert code == 2 and "'manifest.dill'" in out and "from a size" in out, out


def test_bytearray_from_bytes_still_reads(tmp_path: Path) -> None:
    params = {**LEGACY_PARAMS, "blob": bytearray(b"\x00\x01\x02")}
    for protocol in (0, 2, 4, 5):
        _archive(tmp_path, params=dill.dumps(params, protocol=protocol))
        assert load_bundle(tmp_path).params == params


def test_huge_memo_index_is_refused(tmp_path: Path) -> None:
    # LONG_BINPUT 2**31 - 1: the C unpickler would size its memo to 2**32 pointers (32 GiB).
    path = _archive(tmp_path, manifest=b"\x80\x02]r\xff\xff\xff\x7f.")
    code, out, _ = _load_in_child(path)
    assert code == 2 and "memo index" in out and "max_pickle_ops" in out, out


def test_deep_nesting_is_a_bundle_error(tmp_path: Path) -> None:
    # 20,000 nested lists (far past the interpreter's recursion limit of 1000, and 40,000
    # opcodes: under max_pickle_ops, so the depth limit is what stops it), built as opcodes:
    # EMPTY_LIST x n, then APPEND x (n - 1).
    depth = 20_000
    manifest = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    _archive(tmp_path, manifest=manifest)
    with pytest.raises(BundleError, match=r"'manifest.dill'.*max_pickle_depth=100") as info:
        load_bundle(tmp_path)
    assert "\n" not in str(info.value)
    report = inspect(tmp_path)
    assert not report["ok"] and "max_pickle_depth" in report["errors"][0]


def test_recursive_structure_is_refused(tmp_path: Path) -> None:
    params = dict(LEGACY_PARAMS)
    params["self"] = params
    _archive(tmp_path, params=pickle.dumps(params))
    with pytest.raises(BundleError, match=r"'diffraction_to_obj/params.dill'.*contains itself"):
        load_bundle(tmp_path)


def test_operation_byte_and_node_budgets_are_configurable(tmp_path: Path) -> None:
    # 3,000 list items take about 6,000 opcodes: over a 1,000-op budget, far under the default.
    _archive(tmp_path, params=pickle.dumps({**LEGACY_PARAMS, "xs": list(range(3000))}))
    assert len(load_bundle(tmp_path).params["xs"]) == 3000
    with pytest.raises(BundleError, match=r"params.dill.*max_pickle_ops=1,000"):
        load_bundle(tmp_path, limits=BundleLimits(max_pickle_ops=1000))
    # The same 3,000 objects in 200 operations: 100 references to one 30-item list.
    shared = list(range(30))
    _archive(tmp_path, params=pickle.dumps({**LEGACY_PARAMS, "xs": [shared] * 100}))
    with pytest.raises(BundleError, match=r"max_pickle_nodes=1,000"):
        load_bundle(tmp_path, limits=BundleLimits(max_pickle_nodes=1000))
    # A 1 MiB array: 1 MiB in the stream plus the 1 MiB copy made of it, over 1.5 MiB (random
    # values: zeros would trip the compression-ratio limit first).
    probe = np.random.default_rng(0).standard_normal(2**17)
    _archive(tmp_path, params=dill.dumps({**LEGACY_PARAMS, "probe": probe}))
    with pytest.raises(BundleError, match=r"max_pickle_bytes=1,572,864"):
        load_bundle(tmp_path, limits=BundleLimits(max_pickle_bytes=3 * 2**19))
    assert load_bundle(tmp_path).params["probe"].nbytes == 2**20


def test_non_plain_values_are_refused(tmp_path: Path) -> None:
    # The whitelisted types themselves (here ``set``) are resolvable globals, but not data.
    _archive(tmp_path, params=pickle.dumps({**LEGACY_PARAMS, "kind": set}))
    with pytest.raises(BundleError, match="a type object is not plain data"):
        load_bundle(tmp_path)


def test_huge_integer_is_summarised(tmp_path: Path) -> None:
    # Python refuses to convert ints over 4,300 digits to text; the report must still print.
    _archive(tmp_path, params=pickle.dumps({**LEGACY_PARAMS, "N": 2**20000, "big": -(2**20000)}))
    text = format_inspection(inspect(tmp_path))
    assert "N=<int of 20001 bits>" in text and "big = <int of 20001 bits>" in text
