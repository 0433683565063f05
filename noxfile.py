"""Sessions of ptychopinn-multi: one per package in its own venv, isolation, parity, lint.

Every install goes through ``constraints.txt`` so CI and developers test the same versions.
Run everything with ``nox``; one session with ``nox -s tf``; reuse venvs locally with ``nox -r``.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")
PYTHON = "3.11"
API = str(ROOT / "packages" / "ptycho-api")
BUNDLE = str(ROOT / "packages" / "ptycho-bundle")
TF = str(ROOT / "packages" / "ptycho-tf")
TORCH = str(ROOT / "packages" / "ptycho-torch")
PTYCHOPINN = str(ROOT / "packages" / "ptychopinn")
BACKEND_PACKAGES = {"tensorflow": TF, "pytorch": TORCH}
# What Ptychodus 1.7.0's API and model modules import (its own requirements add Qt and mlflow,
# which a headless run does not need, so ptychodus itself goes in with --no-deps).
PTYCHODUS_DEPS = (
    "numpy",
    "scipy",
    "scikit-image",
    "h5py",
    "matplotlib",
    "pyyaml",
    "psutil",
    "tifffile",
    "hdf5plugin",
    "watchdog",
    "scikit-learn",
    "pydantic",
    "httpx",
    "colorcet",
    "pydantic-ai-slim[openai]>=1,<3",  # <3: the 1.x/2.x API that ptychodus 1.7.0 imports
)

nox.options.default_venv_backend = "venv"
nox.options.sessions = [
    "lint",
    "api",
    "bundle",
    "isolation",
    "tf",
    "torch",
    "parity",
    "ptychodus",
]
nox.options.error_on_missing_interpreters = True


# pip byte-compiles every module of every wheel it installs (TensorFlow and torch: tens of
# thousands), half of an install's time; with --no-compile Python compiles only the modules a
# session imports, once, provided it may write the .pyc files, which PYTHONDONTWRITEBYTECODE
# (set on some machines) forbids: without them every child process would recompile TensorFlow.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _install(session: nox.Session, *specs: str) -> None:
    session.install("--no-compile", "-c", CONSTRAINTS, *specs)


def _pytest(session: nox.Session, *paths: str, env: dict[str, str] | None = None) -> None:
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-ra",
        "--durations=10",
        *paths,
        *session.posargs,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0", **(env or {})},
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole repository."""
    _install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def api(session: nox.Session) -> None:
    """ptycho-api tests with only ptycho-api's own dependencies installed."""
    _install(session, f"{API}[test]")
    _pytest(session, "packages/ptycho-api/tests")


@nox.session(python=PYTHON)
def bundle(session: nox.Session) -> None:
    """ptycho-bundle tests with ptycho-api and ptycho-bundle only."""
    _install(session, API, f"{BUNDLE}[test]")
    _pytest(session, "packages/ptycho-bundle/tests")


@nox.session(python=PYTHON)
def isolation(session: nox.Session) -> None:
    """Built wheels of ptycho-api, ptycho-bundle and ptychopinn alone: no framework, clear errors."""
    wheels = Path(session.create_tmp()) / "wheels"
    session.run(
        "python", "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), API, BUNDLE, PTYCHOPINN
    )
    built = sorted(str(p) for p in wheels.glob("*.whl"))
    _install(session, *built, "pytest")
    # Run from a temporary directory so the source tree can never shadow the installed wheels.
    tests = str(ROOT / "tests-isolation")
    with session.chdir(session.create_tmp()):
        _pytest(session, tests, "--rootdir", tests)


@nox.session(python=PYTHON)
def tf(session: nox.Session) -> None:
    """ptycho-tf tests: TensorFlow installed, PyTorch absent."""
    _install(session, API, BUNDLE, f"{TF}[test]")
    _pytest(session, "packages/ptycho-tf/tests")


@nox.session(python=PYTHON)
def torch(session: nox.Session) -> None:
    """ptycho-torch tests: PyTorch + Lightning (+ Triton, for the fused kernels) installed,
    TensorFlow absent. Without a GPU the kernels run in Triton's interpreter; they must run."""
    _install(session, API, BUNDLE, f"{TORCH}[test,triton]")
    _pytest(session, "packages/ptycho-torch/tests", env={"PTYCHO_REQUIRE_TRITON": "1"})


@nox.session(python=PYTHON)
def parity(session: nox.Session) -> None:
    """Cross-backend parity tests with both backends installed in one environment."""
    _install(session, f"{API}[test]", BUNDLE, TF, TORCH)
    _pytest(session, "tests-parity")


@nox.session(python=PYTHON)
@nox.parametrize("backend", list(BACKEND_PACKAGES))
def ptychodus(session: nox.Session, backend: str) -> None:
    """Ptychodus 1.7.0 drives PtychoPINN through `ptychopinn`, with only one backend installed."""
    _install(session, "--no-deps", "ptychodus==1.7.0")
    # One resolver run for Ptychodus's dependencies and ours (each pip call costs seconds).
    _install(
        session, *PTYCHODUS_DEPS, API, BUNDLE, BACKEND_PACKAGES[backend], f"{PTYCHOPINN}[test]"
    )
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-ra",
        "--durations=10",
        "packages/ptychopinn/tests",
        "tests-ptychodus",
        *session.posargs,
        env={
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONHASHSEED": "0",
            "PTYCHO_EXPECT_BACKEND": backend,
            # What is quickest on a 2-core machine (tests-ptychodus/conftest.py has the figures),
            # unless the caller chose (.ci/run, whose other stream has the second core).
            "PTYCHODUS_CONCURRENT_TRAINING": os.environ.get(
                "PTYCHODUS_CONCURRENT_TRAINING", "1" if backend == "tensorflow" else "0"
            ),
            # libgomp's own default: ptycho_torch's lower spin count serves a loaded machine,
            # and costs this session's batch-4 trainings about 20 % on an idle one.
            "GOMP_SPINCOUNT": "300000",
        },
    )


@nox.session(python=PYTHON)
def quality(session: nox.Session) -> None:
    """The published quality protocol on one backend (not in the default set).

    ``nox -s quality -- --scale cpu --backend tensorflow``: installs only that backend, writes
    ``bench-results/quality-<backend>-<scale>.json`` and updates ``docs/quality.md``.
    """
    args = list(session.posargs)
    if "--backend" not in args:
        session.error("nox -s quality -- --backend tensorflow|pytorch [--scale cpu|paper]")
    name = args[args.index("--backend") + 1]
    package = {"tensorflow": TF, "tf": TF, "pytorch": TORCH, "torch": TORCH}.get(name)
    if package is None:
        session.error(f"--backend: expected tensorflow or pytorch; found {name!r}")
    _install(session, API, BUNDLE, package)
    session.run(
        "python",
        "benchmarks/quality.py",
        *args,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks of every backend (not in the default set): JSON + Markdown in bench-results/."""
    _install(session, API, BUNDLE, TF, TORCH)
    session.run(
        "python",
        "benchmarks/bench.py",
        *session.posargs,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"},
    )
