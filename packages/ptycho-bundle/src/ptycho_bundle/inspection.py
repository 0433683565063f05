"""``inspect``: what an archive holds and whether it verifies, without loading any framework or running code."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ptycho_api.errors import BundleError
from ptycho_bundle.display import printable, summary
from ptycho_bundle.layout import (
    CONFIG_JSON,
    FORMAT_VERSION,
    LEGACY_FORMAT_VERSION,
    MANIFEST_DILL,
    MANIFEST_JSON,
    PARAMS_JSON,
    WEIGHTS_H5,
)
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

_LINE_LIMIT = 1000
"""Longest line ``format_inspection`` writes (characters): member names and strings come from the archive."""


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
        name = member["name"]
        # A directory entry has no content to check; "ok" would claim a verification.
        default = "directory entry (no content)" if name.endswith("/") else "ok"
        member["status"] = problems.get(name, default)
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
    if not problems:
        info.update(
            verified=True,
            verification=f"manifest.json valid; {len(verified)} members match their size and SHA-256",
        )
    info.update(
        params=parts["params"], config=parts["config"], weights=_weights_summary(parts["weights"])
    )
    info["native"] = sorted(parts["native"])
    history = parts["history"]
    info["history_keys"] = sorted(history) if isinstance(history, dict) else None


def _inspect_legacy(source: Source, info: dict[str, Any], limits: BundleLimits) -> None:
    info.update(format_version=LEGACY_FORMAT_VERSION, legacy=True)
    if source.members.keys() & {PARAMS_JSON, CONFIG_JSON, WEIGHTS_H5}:
        # Format-2 members without their manifest: removed, or never written. Either way there
        # is nothing to check them against, and they are read as a legacy archive.
        reason = "manifest.json missing: format-2 members present but no checksums to check them"
    else:
        reason = "legacy archive: no manifest.json, no checksums"
    info["verification"] = f"not verified ({reason})"
    for member in info["members"]:
        member["status"] = f"unverified ({reason})"
    try:
        manifest, params = read_legacy(source, trust=False, limits=limits)
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

    ``verified`` is true only when manifest.json was valid and every member matched its size and
    SHA-256; ``verification`` says what was checked, or why nothing could be. Structural problems (not an archive, unsafe names, limits, unreadable or unsupported manifest)
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
            "verified": False,
            "verification": "not verified",
        }
        if MANIFEST_JSON in source.members:
            _inspect_v2(source, info, limits)
        elif MANIFEST_DILL in source.members:
            _inspect_legacy(source, info, limits)
        else:
            raise missing_manifest(source)
    info["ok"] = not info["errors"]
    if not info["ok"]:
        info.update(verified=False, verification=f"failed ({len(info['errors'])} problems)")
    return info


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable text of an ``inspect`` result (used by ``ptycho inspect``); control characters escaped."""
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
            f"N={summary(params.get('N'))}  gridsize={summary(params.get('gridsize'))}  "
            f"intensity_scale={summary(params.get('intensity_scale'))}"
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
        lines.extend(f"  {key} = {summary(params[key], 80)}" for key in sorted(params))
    if info["errors"]:
        lines.append(f"verification: FAILED ({len(info['errors'])} problems)")
        lines.extend(f"  - {error}" for error in info["errors"])
    elif info["verified"]:
        lines.append(f"verification: OK ({info['verification']})")
    else:
        lines.append(f"verification: {info['verification']}")
    # Every string above may come from the archive (member names, manifest fields, pickled
    # params): escape control characters so that printing cannot drive the terminal.
    return "\n".join(printable(line, _LINE_LIMIT) for line in lines)
