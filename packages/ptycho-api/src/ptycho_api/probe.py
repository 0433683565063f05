"""Probe helpers (physics.md B 6.3): support mask, built-in probes, preparation, normalisation."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = [
    "probe_support_mask",
    "default_probe",
    "normalize_probe",
    "smooth_complex",
    "pad_extrapolate",
    "defocused_probe",
    "prepare_probe",
    "builtin_probe",
    "PROBE_KINDS",
    "DEFAULT_PROBE_SCALE",
]

DEFAULT_PROBE_SCALE = 0.7
"""Width parameter of the default disk probe (legacy ``default_probe_scale``)."""


def probe_support_mask(N: int) -> np.ndarray:
    """Circular probe support: ``(N, N)`` float32, 1 where ``hypot(i-N/2+0.5, j-N/2+0.5) < N//4``.

    812 pixels at N=64 and 3228 at N=128 (B 15).
    """
    idx = np.arange(N, dtype=np.float64) - N / 2 + 0.5
    radius = np.hypot(idx[:, None], idx[None, :])
    return (radius < N // 4).astype(np.float32)


def default_probe(N: int, default_probe_scale: float = DEFAULT_PROBE_SCALE) -> np.ndarray:
    """The built-in real disk probe of B 6.3: ``(N, N)`` complex64 with zero phase.

    A 1-D symmetric Gaussian window (std ``N / (default_probe_scale * pi^2)``, max-normalised)
    gives the disk ``outer(w, w) > 0.5`` (376 px at N=64); it is blurred with a Gaussian of
    sigma 1 px and offset by 1e-9 so that it is nowhere exactly zero. Un-normalised: simulation
    uses it as is, the model normalises it with ``normalize_probe``.
    """
    # scipy.signal.windows.gaussian(N, std, sym=True), written out: scipy.signal is slow to import.
    std = N / (default_probe_scale * np.pi**2)
    n = np.arange(N) - (N - 1) / 2
    window = np.exp(-(n**2) / (2 * std**2))
    window = window / window.max()
    disk = (np.outer(window, window) > 0.5).astype(np.float64)
    return (gaussian_filter(disk, sigma=1.0) + 1e-9).astype(np.complex64)


def normalize_probe(probe: np.ndarray, probe_scale: float = 4.0) -> np.ndarray:
    """Model probe of B 6.3: ``P / (probe_scale * mean|mask * P|)``, ``(N, N)`` -> ``(N, N)`` complex64.

    The mean runs over all N^2 pixels, so afterwards ``mean|mask * P| == 1 / probe_scale``.
    For the default probe at N=64 with probe_scale 4: max |P| 2.7234, sum |P|^2 2505.119.
    """
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"normalize_probe: probe must be (N, N); found shape {probe.shape}")
    if not probe_scale > 0:
        raise ValueError(f"normalize_probe: probe_scale must be > 0; found {probe_scale!r}")
    p = probe.astype(np.complex128)
    denominator = probe_scale * np.mean(np.abs(probe_support_mask(probe.shape[0]) * p))
    if denominator == 0:
        raise ValueError("normalize_probe: the probe is zero everywhere inside its support mask")
    return (p / denominator).astype(np.complex64)


def smooth_complex(probe: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a complex probe: ``(N, N)`` -> ``(N, N)`` complex64.

    Amplitude and *unwrapped* phase are smoothed separately with a Gaussian of ``sigma``
    pixels and recombined (the original's ``smooth_complex_array``), so phase wraps are not
    averaged into zeros. ``sigma`` 0 returns the probe unchanged.
    """
    from skimage.restoration import unwrap_phase

    probe = np.asarray(probe)
    if sigma <= 0:
        return probe.astype(np.complex64)
    amplitude = gaussian_filter(np.abs(probe).astype(np.float64), sigma)
    phase = gaussian_filter(unwrap_phase(np.angle(probe).astype(np.float64)), sigma)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def pad_extrapolate(probe: np.ndarray, N: int) -> np.ndarray:
    """Bring a probe to ``(N, N)`` by edge-padding its amplitude and extrapolating its phase.

    The unwrapped phase is fitted by ``a r^2 + b`` (r from the array centre, pixels) and that
    quadratic is evaluated on the padded grid and wrapped into (-pi, pi], so the probe keeps its
    curvature beyond the measured field (the original's ``pad_extrapolate`` mode). The phase is
    replaced by its quadratic fit even when no padding is needed. -> ``(N, N)`` complex64.
    """
    from skimage.restoration import unwrap_phase

    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"pad_extrapolate: probe must be square (n, n); found {probe.shape}")
    n = probe.shape[0]
    if N < n:
        raise ValueError(f"pad_extrapolate: target size {N} is smaller than the probe's {n}")
    before = (N - n) // 2
    amplitude = np.pad(np.abs(probe).astype(np.float64), (before, N - n - before), mode="edge")
    phase = unwrap_phase(np.angle(probe).astype(np.float64))
    a, b = _fit_quadratic_phase(phase)
    r2 = _squared_radius(N)
    wrapped = np.angle(np.exp(1j * (a * r2 + b)))
    return (amplitude * np.exp(1j * wrapped)).astype(np.complex64)


def _squared_radius(n: int) -> np.ndarray:
    """``(n, n)`` squared distance to the array centre ``((n-1)/2, (n-1)/2)``, pixels^2."""
    centre = (n - 1) / 2.0
    idx = np.arange(n, dtype=np.float64) - centre
    return idx[:, None] ** 2 + idx[None, :] ** 2


def _fit_quadratic_phase(phase: np.ndarray) -> tuple[float, float]:
    """Least-squares ``phase ~ a r^2 + b`` over the whole array: -> (a rad/px^2, b rad)."""
    r2 = _squared_radius(phase.shape[0]).ravel()
    design = np.column_stack([r2, np.ones_like(r2)])
    (a, b), *_ = np.linalg.lstsq(design, phase.ravel(), rcond=None)
    return float(a), float(b)


def defocused_probe(
    N: int,
    *,
    pupil_radius: float = 0.3,
    central_stop: float = 0.45,
    defocus: float = 10.0,
    coma: float = 3.0,
) -> np.ndarray:
    """A structured, experiment-like probe: ``(N, N)`` complex64 with max amplitude 1.

    A Fresnel zone plate focuses an annular pupil (outer radius ``pupil_radius`` cycles/pixel,
    central stop ``central_stop`` of it); out of focus the probe is a soft ring with curved phase.
    Here the pupil carries a defocus phase of ``defocus`` radians at its edge (``(k/k_max)^2``)
    and a coma term of ``coma`` radians (``(k/k_max)^3 cos(theta)``) that breaks the symmetry, as
    real beamline probes do; the probe is the inverse FFT of that pupil. Unlike the idealised
    disk it is complex and not centro-symmetric, which removes the twin-image ambiguity a single
    pattern has under a real symmetric probe.
    """
    k = np.fft.fftshift(np.fft.fftfreq(N))
    ky, kx = np.meshgrid(k, k, indexing="ij")
    rho = np.hypot(kx, ky) / pupil_radius
    theta = np.arctan2(ky, kx)
    pupil = ((rho <= 1.0) & (rho >= central_stop)).astype(np.float64)
    aberration = defocus * rho**2 + coma * rho**3 * np.cos(theta)
    field = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil * np.exp(1j * aberration))))
    return (field / np.abs(field).max()).astype(np.complex64)


PROBE_KINDS = ("disk", "defocused")
"""Built-in probes: the idealised ``disk`` (``default_probe``) and a ``defocused`` zone-plate probe."""


def builtin_probe(kind: str, N: int) -> np.ndarray:
    """A built-in probe of ``PROBE_KINDS``: ``(N, N)`` complex64 (raw, not normalised)."""
    if kind == "disk":
        return default_probe(N).astype(np.complex64)
    if kind == "defocused":
        return defocused_probe(N)
    raise ValueError(f"probe kind: expected one of {list(PROBE_KINDS)}; found {kind!r}")


def prepare_probe(probe: np.ndarray, N: int, smoothing_sigma: float = 0.0) -> np.ndarray:
    """The original's probe preparation: ``pad_extrapolate`` to N, then ``smooth_complex``.

    ``(n, n)`` complex with n <= N -> ``(N, N)`` complex64. A probe that is real and flat in
    phase (the idealised disk) keeps its phase at zero; ``smoothing_sigma`` 0 skips smoothing.
    """
    return smooth_complex(pad_extrapolate(probe, N), smoothing_sigma)
