"""IR <-> ``ir.json`` (structure, readable) + ``ir.npz`` (weights and thresholds)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from compiler.build import atomic_write
from compiler.ir.model import (
    FIFO,
    LAYER_KINDS,
    FloatStep,
    InputEdge,
    Model,
    OutputEdge,
)
from compiler.ir.types import IntType

IR_JSON = "ir.json"
IR_NPZ = "ir.npz"
FORMAT = 1
_CLASSES = {c.__name__: c for c in (FIFO, InputEdge, Model, OutputEdge, FloatStep)}
_CLASSES |= {c.__name__: c for c in LAYER_KINDS.values()}


def _encode(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, IntType):
        return {"$int": obj.name}
    if isinstance(obj, np.ndarray):
        arrays[path] = obj
        return {"$array": path}
    if dataclasses.is_dataclass(obj):
        out = {"$class": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = _encode(getattr(obj, f.name), f"{path}.{f.name}".lstrip("."), arrays)
        return out
    if isinstance(obj, list | tuple):
        name = lambda i, x: getattr(x, "name", None) or str(i)  # noqa: E731
        return [_encode(x, f"{path}.{name(i, x)}", arrays) for i, x in enumerate(obj)]
    if isinstance(obj, dict):
        return {k: _encode(v, f"{path}.{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _decode(obj: Any, arrays, classes: dict[str, type]) -> Any:
    if isinstance(obj, dict):
        if "$int" in obj:
            return IntType.parse(obj["$int"])
        if "$array" in obj:
            return arrays[obj["$array"]]
        if "$class" in obj:
            cls = classes[obj["$class"]]
            kwargs = {}
            for f in dataclasses.fields(cls):
                if f.name in obj:
                    v = _decode(obj[f.name], arrays, classes)
                    kwargs[f.name] = (
                        tuple(v) if f.name in ("in_shape", "shape", "out_shape", "perm") else v
                    )
            return cls(**kwargs)
        return {k: _decode(v, arrays, classes) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(x, arrays, classes) for x in obj]
    return obj


def save_object(obj: Any, json_path: Path, npz_path: Path) -> None:
    """Write a tree of IR dataclasses as readable JSON + an npz of its arrays, atomically."""
    arrays: dict[str, np.ndarray] = {}
    doc = {"format": FORMAT, "model": _encode(obj, "", arrays)}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(Path(npz_path), lambda p: p.write_bytes(buf.getvalue()))
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    atomic_write(Path(json_path), lambda p: p.write_text(text))


def load_object(json_path: Path, npz_path: Path, classes: dict[str, type] | None = None) -> Any:
    json_path = Path(json_path)
    doc = json.loads(json_path.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{json_path}: IR format {doc.get('format')}, expected {FORMAT}")
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return _decode(doc["model"], arrays, {**_CLASSES, **(classes or {})})


def save(model: Model, out_dir: Path) -> None:
    """Write ``out_dir/ir.json`` and ``out_dir/ir.npz`` atomically."""
    save_object(model, Path(out_dir) / IR_JSON, Path(out_dir) / IR_NPZ)


def load(out_dir: Path) -> Model:
    out_dir = Path(out_dir)
    return load_object(out_dir / IR_JSON, out_dir / IR_NPZ)
