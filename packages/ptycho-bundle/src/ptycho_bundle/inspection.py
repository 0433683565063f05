"""``inspect``: what an archive holds and whether it verifies, without loading any framework or running code."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ptycho_api.errors import BundleError
from ptycho_bundle.layout import FORMAT_VERSION, LEGACY_FORMAT_VERSION, MANIFEST_DILL, MANIFEST_JSON
from ptycho_bundle.legacy import legacy_backend
from ptycho_bundle.limits import DEFAULT_LIMITS, BundleLimits
from ptycho_bundle.reader import (
    check_members,
    legacy_native,
    missing_manifest,
    parse_v2,
    read_legacy,
    read_manifest,
)
from ptycho_bundle.source import Source, open_source

__all__ = ["inspect", "format_inspection"]


def _weights_summary(weights: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {
        name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in sorted(weights.items())
    }


def _inspect_v2(source: Source, info: dict[str, Any], limits: BundleLimits) -> None:
    manifest = read_manifest(source)
    info.update(format_version=FORMAT_VERSION, legacy=False, manifest=manifest)
    info.update(backend=manifest["backend"], models=manifest["models"])
    verified, problems = check_members(source, manifest)
    for member in info["members"]:
        member["status"] = problems.get(member["name"], "ok")
    info["members"].extend(
        {"name": n, "size": None, "compressed_size": None, "status": p}
        for n, p in problems.items()
        if n not in source.members
    )
    info["errors"].extend(f"{name}: {problem}" for name, problem in problems.items())
    try:
        parts = parse_v2(source, manifest, verified, limits)
    except BundleError as exc:
        info["errors"].append(str(exc))
        return
    info.update(
        params=parts["params"], config=parts["config"], weights=_weights_summary(parts["weights"])
    )
    info["native"] = sorted(parts["native"])
    history = parts["history"]
    info["history_keys"] = sorted(history) if isinstance(history, dict) else None


def _inspect_legacy(source: Source, info: dict[str, Any]) -> None:
    info.update(format_version=LEGACY_FORMAT_VERSION, legacy=True)
    for member in info["members"]:
        member["status"] = "unverified (legacy archive has no checksums)"
    try:
        manifest, params = read_legacy(source, trust=False)
    except BundleError as exc:
        info["errors"].append(str(exc))
        return
    info.update(
        manifest=manifest,
        params=params,
        backend=legacy_backend(manifest),
        models=manifest["models"],
    )
    info["native"] = sorted(legacy_native(source, manifest["models"]))


def inspect(path: str | os.PathLike[str], *, limits: BundleLimits | None = None) -> dict[str, Any]:
    """Report an archive: manifest, params, config, weight shapes, members with verification status, errors.

    Structural problems (not an archive, unsafe names, limits, unreadable or unsupported manifest)
    raise ``BundleError``; problems with individual members are reported under ``errors``.
    Legacy pickles are read only with the restricted unpickler, never executed.
    """
    limits = limits or DEFAULT_LIMITS
    with open_source(path, limits) as source:
        info: dict[str, Any] = {
            "path": source.location,
            "kind": source.kind,
            "format_version": None,
            "legacy": None,
            "backend": None,
            "models": None,
            "manifest": None,
            "params": None,
            "config": None,
            "weights": None,
            "history_keys": None,
            "native": [],
            "members": [
                {
                    "name": m.name,
                    "size": m.size,
                    "compressed_size": m.compressed_size,
                    "status": "ok",
                }
                for m in source.members.values()
            ],
            "errors": [],
        }
        if MANIFEST_JSON in source.members:
            _inspect_v2(source, info, limits)
        elif MANIFEST_DILL in source.members:
            _inspect_legacy(source, info)
        else:
            raise missing_manifest(source)
    info["ok"] = not info["errors"]
    return info


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable text of an ``inspect`` result (used by ``ptycho inspect``)."""
    if info["legacy"]:
        kind = "legacy PtychoPINN archive (no manifest.json; no checksums)"
    else:
        kind = f"ptycho-bundle format {info['format_version']}"
    lines = [f"archive:   {info['path']} ({info['kind']})", f"format:    {kind}"]
    lines.append(f"backend:   {info['backend'] or '?'}")
    manifest = info["manifest"] or {}
    if not info["legacy"] and manifest:
        lines.append(f"created:   {manifest['created']}")
        lines.append("versions:  " + ", ".join(f"{k} {v}" for k, v in manifest["versions"].items()))
    if info["models"]:
        lines.append("models:    " + ", ".join(info["models"]))
    params = info["params"]
    if params is not None:
        lines.append(
            f"N={params.get('N')}  gridsize={params.get('gridsize')}  intensity_scale={params.get('intensity_scale')}"
        )
    if info["weights"] is not None:
        weights = info["weights"]
        count = sum(int(np.prod(w["shape"], dtype=np.int64)) for w in weights.values())
        lines.append(f"weights:   {len(weights)} tensors, {count:,} values")
        width = max((len(n) for n in weights), default=0)
        lines.extend(
            f"  {n:<{width}}  {tuple(w['shape'])} {w['dtype']}" for n, w in weights.items()
        )
    if info["native"]:
        lines.append("native:    " + ", ".join(info["native"]))
    if info["history_keys"]:
        lines.append("history:   " + ", ".join(info["history_keys"]))
    lines.append("members:")
    for member in info["members"]:
        size = "-" if member["size"] is None else f"{member['size']:,}"
        lines.append(f"  {size:>14}  {member['name']}  [{member['status']}]")
    if params is not None:
        lines.append(f"params ({len(params)} keys):")
        lines.extend(f"  {key} = {_fmt(params[key])}" for key in sorted(params))
    if info["ok"]:
        lines.append("verification: OK")
    else:
        lines.append(f"verification: FAILED ({len(info['errors'])} problems)")
        lines.extend(f"  - {error}" for error in info["errors"])
    return "\n".join(lines)
