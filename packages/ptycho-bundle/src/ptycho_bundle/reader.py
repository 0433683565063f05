"""Reading an archive safely (bundle.md part 2): format 2 with checksums, or a legacy PtychoPINN archive."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.errors import BundleError
from ptycho_bundle.display import summary
from ptycho_bundle.layout import (
    CONFIG_JSON,
    CUSTOM_OBJECTS_DILL,
    FORMAT_VERSION,
    HISTORY_JSON,
    LEGACY_FORMAT_VERSION,
    MANIFEST_DILL,
    MANIFEST_JSON,
    PARAMS_DILL,
    PARAMS_JSON,
    WEIGHTS_H5,
)
from ptycho_bundle.legacy import legacy_backend, restricted_loads, trusted_loads
from ptycho_bundle.limits import DEFAULT_LIMITS, BundleLimits
from ptycho_bundle.manifest import sha256, validate_manifest
from ptycho_bundle.snapshot import required_params
from ptycho_bundle.source import Source, open_source
from ptycho_bundle.weights import weights_from_h5

__all__ = ["Bundle", "load_bundle"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Bundle:
    """A loaded, verified archive: metadata, params snapshot, config, canonical weights and native artifacts."""

    path: Path
    format_version: int
    legacy: bool
    backend: str
    models: tuple[str, ...]
    manifest: dict[str, Any]
    params: dict[str, Any]
    config: dict[str, Any] | None
    weights: dict[str, np.ndarray]
    history: Any
    native_members: dict[str, bytes] = dataclasses.field(repr=False)

    @property
    def N(self) -> int:
        """Patch size ``N`` of the saved model."""
        return int(self.params["N"])

    @property
    def gridsize(self) -> int:
        """``gridsize`` of the saved model."""
        return int(self.params["gridsize"])

    @property
    def intensity_scale(self) -> float:
        """The saved ``intensity_scale``."""
        return float(self.params["intensity_scale"])

    def native(self, model: str, filename: str) -> bytes | None:
        """Bytes of the native artifact ``<model>/<filename>`` (e.g. ``model.pth``), or ``None``; never deserialized here."""
        return self.native_members.get(f"{model}/{filename}")


def check_members(
    source: Source, manifest: dict[str, Any]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read and verify every member the manifest lists; returns ``(verified bytes, problems by member)``."""
    listed: dict[str, dict[str, Any]] = manifest["members"]
    present = {name for name in source.members if not name.endswith("/")} - {MANIFEST_JSON}
    problems = {
        name: "listed in manifest.json but missing from the archive"
        for name in sorted(listed.keys() - present)
    }
    problems.update(
        {
            name: "not listed in manifest.json (added after writing?)"
            for name in sorted(present - listed.keys())
        }
    )
    verified: dict[str, bytes] = {}
    for name in sorted(listed.keys() & present):
        entry = listed[name]
        if source.members[name].size != entry["size"]:
            problems[name] = (
                f"size {source.members[name].size} bytes, manifest.json says {entry['size']}"
            )
            continue
        data = source.read(name)
        if sha256(data) != entry["sha256"]:
            problems[name] = (
                "checksum mismatch (sha256 differs from manifest.json): the member was modified"
            )
            continue
        verified[name] = data
    return verified, problems


def _member_error(source: Source, name: str, problem: str) -> BundleError:
    return BundleError(f"{source.location}: member {name!r}: {problem}")


def _parse_json(source: Source, name: str, data: bytes, *, expect_object: bool = True) -> Any:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _member_error(source, name, f"not valid JSON ({exc})") from None
    if expect_object and not isinstance(value, dict):
        raise _member_error(source, name, f"expected a JSON object; found {type(value).__name__}")
    return value


def read_manifest(source: Source) -> dict[str, Any]:
    """The validated ``manifest.json`` of a format-2 source."""
    return validate_manifest(
        _parse_json(source, MANIFEST_JSON, source.read(MANIFEST_JSON)), source.location
    )


def parse_v2(
    source: Source, manifest: dict[str, Any], verified: dict[str, bytes], limits: BundleLimits
) -> dict[str, Any]:
    """Params, config, history, weights and native artifacts from verified format-2 members."""
    for name in (PARAMS_JSON, CONFIG_JSON, WEIGHTS_H5):
        if name not in verified:
            reason = (
                "failed verification"
                if name in manifest["members"]
                else "required member missing (not listed in manifest.json)"
            )
            raise _member_error(source, name, reason)
    params = _parse_json(source, PARAMS_JSON, verified[PARAMS_JSON])
    found = required_params(params, f"{source.location}: member {PARAMS_JSON!r}")
    declared = (manifest["N"], manifest["gridsize"], manifest["intensity_scale"])
    if found != declared:
        raise _member_error(
            source,
            PARAMS_JSON,
            f"(N, gridsize, intensity_scale) = {found} but manifest.json says {declared}",
        )
    history = None
    if HISTORY_JSON in verified:
        history = _parse_json(source, HISTORY_JSON, verified[HISTORY_JSON], expect_object=False)
    models = manifest["models"]
    return {
        "params": params,
        "config": _parse_json(source, CONFIG_JSON, verified[CONFIG_JSON]),
        "history": history,
        "weights": weights_from_h5(
            verified[WEIGHTS_H5], where=f"{source.location}: member {WEIGHTS_H5!r}", limits=limits
        ),
        "native": {
            name: data
            for name, data in verified.items()
            if name.count("/") == 1
            and name.split("/")[0] in models
            and name.split("/")[1] != PARAMS_DILL
        },
    }


def _load_v2(source: Source, limits: BundleLimits) -> Bundle:
    manifest = read_manifest(source)
    verified, problems = check_members(source, manifest)
    if problems:
        name, problem = next(iter(problems.items()))
        raise _member_error(source, name, problem)
    parts = parse_v2(source, manifest, verified, limits)
    return Bundle(
        path=source.path,
        format_version=FORMAT_VERSION,
        legacy=False,
        backend=manifest["backend"],
        models=tuple(manifest["models"]),
        manifest=manifest,
        params=parts["params"],
        config=parts["config"],
        weights=parts["weights"],
        history=parts["history"],
        native_members=parts["native"],
    )


def read_legacy(
    source: Source, *, trust: bool, limits: BundleLimits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(manifest, params)`` of a legacy archive: ``manifest.dill`` and the first model's ``params.dill``."""

    def loads(data: bytes, where: str) -> Any:
        return trusted_loads(data, where) if trust else restricted_loads(data, where, limits)

    manifest = loads(source.read(MANIFEST_DILL), f"{source.location}: member {MANIFEST_DILL!r}")
    models = manifest.get("models") if isinstance(manifest, dict) else None
    if not isinstance(models, list) or not all(
        isinstance(m, str) and m and "/" not in m for m in models
    ):
        raise _member_error(
            source,
            MANIFEST_DILL,
            f"expected {{'models': [model names], ...}}; found {summary(manifest)}",
        )
    candidates = [f"{m}/{PARAMS_DILL}" for m in ("diffraction_to_obj", *models)]
    name = next((c for c in candidates if c in source.members), None)
    if name is None:
        raise _member_error(
            source,
            candidates[0],
            f"missing: no {PARAMS_DILL} in any model folder {summary(models)}",
        )
    params = loads(source.read(name), f"{source.location}: member {name!r}")
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise _member_error(
            source, name, f"expected a dict with string keys; found {type(params).__name__}"
        )
    required_params(params, f"{source.location}: member {name!r}")
    return manifest, params


def legacy_native(source: Source, models: list[str]) -> dict[str, bytes]:
    """Backend-native files of a legacy archive's model folders (``.dill`` members excluded)."""
    return {
        name: source.read(name)
        for name in source.members
        if name.count("/") == 1
        and name.split("/")[0] in models
        and name.split("/")[1] not in ("", PARAMS_DILL, CUSTOM_OBJECTS_DILL)
    }


def _load_legacy(source: Source, trust: bool, limits: BundleLimits) -> Bundle:
    manifest, params = read_legacy(source, trust=trust, limits=limits)
    models = manifest["models"]
    return Bundle(
        path=source.path,
        format_version=LEGACY_FORMAT_VERSION,
        legacy=True,
        backend=legacy_backend(manifest),
        models=tuple(models),
        manifest=manifest,
        params=params,
        config=None,
        weights={},
        history=None,
        native_members=legacy_native(source, models),
    )


def missing_manifest(source: Source) -> BundleError:
    """The error for an archive with neither ``manifest.json`` nor ``manifest.dill``."""
    shown = sorted(source.members)[:10]
    return BundleError(
        f"{source.location}: missing manifest member: neither {MANIFEST_JSON!r} nor {MANIFEST_DILL!r} "
        f"found, so this is not a model archive (members: {shown}{' ...' if len(source.members) > 10 else ''})"
    )


def load_bundle(
    path: str | os.PathLike[str], *, trust: bool = False, limits: BundleLimits | None = None
) -> Bundle:
    """Open, check and read the archive at ``path``; ``trust=True`` unpickles legacy members with dill (RUNS CODE)."""
    limits = limits or DEFAULT_LIMITS
    with open_source(path, limits) as source:
        if MANIFEST_JSON in source.members:
            bundle = _load_v2(source, limits)
        elif MANIFEST_DILL in source.members:
            bundle = _load_legacy(source, trust, limits)
        else:
            raise missing_manifest(source)
    logger.info(
        "loaded model archive %s (format %d, %s backend, %d weights)",
        bundle.path,
        bundle.format_version,
        bundle.backend,
        len(bundle.weights),
    )
    return bundle
