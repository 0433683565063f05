"""Throughput, training time and memory of the TF backend (issue 5 benchmark figures).

Usage (from the repository root)::

    TF_CPP_MIN_LOG_LEVEL=2 python packages/ptycho-tf/benchmarks/bench_tf.py [--quick]

Model: N=64, gridsize 1, n_filters_scale 2, batch 64. "Bare" is the encoder-decoder alone
(the same conv layers up to the object patches, no canvas/probe/FFT). Figures are printed as a
Markdown table and written as JSON next to the working directory (``bench_tf.json``).
Peak memory is measured in a fresh subprocess (``--predict-memory``) that only builds the model,
allocates the 20,000 inputs and predicts them in streamed batches: its maximum RSS
(``resource.getrusage``), next to the RSS before predicting and the size of inputs + outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from ptycho_api.config import ModelConfig
from ptycho_api.probe import default_probe
from ptycho_tf.backend import Backend as TFBackend
from ptycho_tf.config import ExecutionConfig
from ptycho_tf.losses import loss_terms

logger = logging.getLogger("bench_tf")

N = 64
BATCH = 64
S = 988.2118


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: tracing and compilation are not part of the figure
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def predict_memory(n_predict: int, jit: bool | str) -> dict[str, float]:
    """Predict ``n_predict`` patterns in a fresh process; RSS figures in GiB."""
    backend = TFBackend(ExecutionConfig(jit_compile=jit, verbose=0))
    models = backend.build_model(
        ModelConfig(N=N, gridsize=1, n_filters_scale=2), default_probe(N), S
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 900, size=(n_predict, N, N, 1)).astype(np.float32)
    offsets = np.zeros((n_predict, 1, 2, 1), np.float32)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    start = time.perf_counter()
    patches = backend.predict(models, x, offsets, batch_size=BATCH)
    elapsed = time.perf_counter() - start
    return {
        f"predict_{n_predict}_s": elapsed,
        "rss_gb_before_predict": rss_before,
        f"peak_rss_gb_predict_{n_predict}": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024**2,
        "inputs_plus_outputs_gb": (x.nbytes + offsets.nbytes + patches.nbytes) / 1024**3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and patterns")
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--predict-memory", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    if args.predict_memory:
        # Child mode: one JSON line on stdout for the parent.
        sys.stdout.write(json.dumps(predict_memory(args.predict_memory, jit)) + "\n")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = TFBackend(ExecutionConfig(jit_compile=jit, verbose=0))
    cfg = ModelConfig(N=N, gridsize=1, n_filters_scale=2)
    models = backend.build_model(cfg, default_probe(N), S, seed=0)
    ae = models.autoencoder
    bare = keras.Model(ae.inputs[0], ae.get_layer("object_patches").output, name="bare")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 900, size=(BATCH, N, N, 1)).astype(np.float32))
    off = tf.constant(np.zeros((BATCH, 1, 2, 1), np.float32))
    repeats = 3 if args.quick else 10
    jit_on = backend.jit_compile

    full_step = tf.function(lambda a, b: ae([a, b])[0], jit_compile=jit_on)
    bare_step = tf.function(lambda a: bare(a), jit_compile=jit_on)
    t_full = _timed(lambda: full_step(x, off).numpy(), repeats)
    t_bare = _timed(lambda: bare_step(x).numpy(), repeats)

    opt_full = keras.optimizers.Adam(1e-3, epsilon=1e-7)
    opt_bare = keras.optimizers.Adam(1e-3, epsilon=1e-7)
    trainable = ae.trainable_variables
    bare_vars = bare.trainable_variables

    @tf.function(jit_compile=jit_on)
    def train_full(a, b):
        with tf.GradientTape() as tape:
            _, amp, _ = ae([a, b], training=True)
            loss = loss_terms(amp, a)[0]
        opt_full.apply_gradients(zip(tape.gradient(loss, trainable), trainable, strict=True))
        return loss

    @tf.function(jit_compile=jit_on)
    def train_bare(a):
        with tf.GradientTape() as tape:
            out = bare(a, training=True)
            loss = tf.reduce_mean(tf.abs(out))
        opt_bare.apply_gradients(zip(tape.gradient(loss, bare_vars), bare_vars, strict=True))
        return loss

    steps_per_epoch = 2048 // BATCH
    t_train_full = _timed(lambda: float(train_full(x, off)), repeats) * steps_per_epoch
    t_train_bare = _timed(lambda: float(train_bare(x)), repeats) * steps_per_epoch

    n_predict = 2000 if args.quick else 20000
    memory = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--predict-memory", str(n_predict), "--jit", args.jit],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    figures = {
        "device": backend.devices(),
        "xla": jit_on,
        "predict_patterns_per_s_full": BATCH / t_full,
        "predict_patterns_per_s_bare": BATCH / t_bare,
        "predict_ratio_full_over_bare": t_bare / t_full,
        "train_s_per_epoch_2048_full": t_train_full,
        "train_s_per_epoch_2048_bare": t_train_bare,
        "train_ratio_full_over_bare": t_train_full / t_train_bare,
        **memory,
    }
    with open("bench_tf.json", "w", encoding="utf-8") as fh:
        json.dump(figures, fh, indent=2)
    lines = ["| figure | value |", "|---|---|"]
    lines += [
        f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in figures.items()
    ]
    logger.info("\n".join(lines))


if __name__ == "__main__":
    main()
