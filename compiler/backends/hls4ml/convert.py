"""QONNX -> hls4ml project (Vitis back end, ``io_stream``) under ``DIR/hls4ml/``.

hls4ml gets the same partition as the IR: the host keeps the input edge (pre-ops before the
input quantizer) and a trailing Softmax; the project starts at the input quantizer, whose type
becomes the input layer's type, and ends at the last layer's output. Precisions come from the
model's own quantizers (hls4ml's ``auto``); every accumulator is then checked against the
exact worst case of its weights and widened if hls4ml chose it too narrow. A CNN goes in
channels-last (qonnx's conversion, the input included): the input stream is the image pixel by
pixel, NHWC, as the IR's input edge transposes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np

from compiler.build import HLS4ML_DIR as HLS_DIR  # noqa: E402
from compiler.build import (
    REFERENCE_ONNX,  # noqa: E402
    write_json,
)
from compiler.errors import TaperError

META = "taper.json"


# ---------------------------------------------------------------------------- graph


def biasless_gemm_to_matmul(model):
    """Rewrite Gemm nodes without a bias (C) as [Transpose] -> MatMul [-> Mul alpha].

    qonnx 1.0.0's ``GemmToMatMul`` reads ``n.input[2]`` unconditionally and raises IndexError
    on a bias-less Gemm (tests/test_hls4ml.py fails when that is fixed upstream); Gemms with a
    bias are left to it.
    """
    from onnx import helper

    g = model.graph
    for i, n in enumerate(list(g.node)):
        if n.op_type != "Gemm" or (len(n.input) > 2 and n.input[2]):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        a_in, b_in = n.input[0], n.input[1]
        new = []
        for flag, name in (("transA", "a_in"), ("transB", "b_in")):
            if attrs.get(flag, 0):
                src = a_in if name == "a_in" else b_in
                t = model.make_new_valueinfo_name()
                new.append(helper.make_node("Transpose", [src], [t], perm=[1, 0]))
                if name == "a_in":
                    a_in = t
                else:
                    b_in = t
        alpha = float(attrs.get("alpha", 1.0))
        mm_out = n.output[0] if alpha == 1.0 else model.make_new_valueinfo_name()
        new.append(helper.make_node("MatMul", [a_in, b_in], [mm_out], name=n.name))
        if alpha != 1.0:
            c = model.make_new_valueinfo_name()
            model.set_initializer(c, np.asarray(alpha, dtype=np.float32))
            new.append(helper.make_node("Mul", [mm_out, c], [n.output[0]]))
        g.node.remove(n)
        for k, nn in enumerate(new):
            g.node.insert(i + k, nn)
    return model


def _input_quant(model):
    """The quantizer on the graph input (through the host's pre-ops), or None."""
    inits = {t.name for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("Quant", "BipolarQuant") and n.input[0] not in inits:
            return n
    return None


def prepare(model, source: str):
    """The graph hls4ml gets: from the input quantizer to before a trailing Softmax."""
    from onnx import helper
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(model)
    q = _input_quant(model)
    if q is None or q.op_type != "Quant":
        raise TaperError(
            f"{source}: the model input does not go through a Quant, so hls4ml has no exact "
            "type for it (hls4ml rule: quantized inputs); give it one with --input-type"
        )
    g = model.graph
    # Cut the host's pre-ops (shape ops, TFC's 2x-1): the IR's input edge runs them.
    pre, t = [], q.input[0]
    while (p := model.find_producer(t)) is not None:
        if p.op_type not in ("Reshape", "Flatten", "Mul", "Div", "Add", "Sub"):
            raise TaperError(
                f"{source}: node {p.name} before the input quantizer is no host pre-op"
            )
        pre.append(p)
        t = p.input[0]
    shape = list(model.get_tensor_shape(q.input[0]))
    conv = any(n.op_type == "Conv" for n in g.node)
    if len(shape) not in (2, 4) or (len(shape) == 4) != conv:
        raise TaperError(
            f"{source}: input quantizer {q.name} sees shape {shape}; the hls4ml back end takes "
            "a flat input (MLP) or an NCHW image into a convolution (CNN)"
        )
    for n in pre:
        g.node.remove(n)
    name = "taper_input"
    q.input[0] = name
    del g.input[:]
    # An MLP's input is a flat vector; a CNN's the NCHW image, made channels-last below (the
    # stream is pixel by pixel, as the IR's input edge transposes it: perm (1, 2, 0)).
    dims = [1, *shape[1:]] if conv else [1, int(np.prod(shape[1:]))]
    g.input.append(helper.make_tensor_value_info(name, 1, dims))
    last = g.node[-1]
    if last.op_type == "Softmax":  # the output edge: on the host, as in the IR
        vi = next((v for v in g.value_info if v.name == last.input[0]), None)
        if vi is None:
            vi = helper.make_tensor_value_info(last.input[0], 1, None)
        else:
            g.value_info.remove(vi)
        g.node.remove(last)
        g.output.remove(g.output[0])
        g.output.append(vi)
    with _quiet():  # GemmToMatMul warns about opset versions it was not written for
        model = biasless_gemm_to_matmul(model)
        model = model.transform(GemmToMatMul())
        if conv:
            from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean

            model = cleanup_model(model)  # shapes for the channels-last conversion
            model = model.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
        return cleanup_model(model)


def quant_precision(model, q) -> str:
    """hls4ml type of a Quant with a power-of-two scale: ``[u]fixed<bits, bits + log2 scale>``."""
    bits = int(model.get_initializer(q.input[3]))
    scale = float(np.asarray(model.get_initializer(q.input[1])).ravel()[0])
    signed = next((a.i for a in q.attribute if a.name == "signed"), 1)
    integer = bits + int(round(np.log2(scale)))
    return f"{'' if signed else 'u'}fixed<{bits},{integer}>"


# ---------------------------------------------------------------------------- precision


# hls4ml layers that sum products of weights and inputs into ``accum_t`` (a convolution's
# weights are (kernel..., in channels, out channels): the last axis is the output's)
_SUMS = {"Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D"}


def exact_accumulators(hm) -> list[str]:
    """Widen any Dense or convolution accumulator/result type that cannot hold its exact
    worst case (a convolution's zero padding is a 0 input, inside every input range).

    Returns the names of the layers changed. hls4ml's ``auto`` precision usually gets it right,
    but a binary-weight layer falls back to the default ``fixed<16,6>``; this makes exactness
    a property of taper, not of hls4ml's inference.
    """
    changed = []
    for layer in hm.get_layers():
        if layer.class_name not in _SUMS:
            continue
        xp = layer.get_input_variable().type.precision
        xf = xp.width - xp.integer
        xmax = (2.0 ** (xp.width - (1 if xp.signed else 0)) - 1) * 2.0**-xf
        xmin = -(2.0 ** (xp.width - 1)) * 2.0**-xf if xp.signed else 0.0
        wv = layer.weights["weight"]
        w = np.asarray(wv.data, dtype=np.float64)
        if _is_xnor(wv.type.precision):  # hls4ml stores binary weights as one bit: 0 = -1
            w = 2 * w - 1
        if layer.get_attr("_weights_transposed", False):  # the Resource strategy's layout
            w = np.moveaxis(w, 0, -1)
        w = w.reshape(-1, w.shape[-1]) if w.ndim > 1 else w[:, None]
        b = layer.weights.get("bias")
        bias = np.zeros(w.shape[1]) if b is None else np.asarray(b.data, np.float64).ravel()
        hi = np.maximum(w * xmax, w * xmin).sum(axis=0) + bias
        lo = np.minimum(w * xmax, w * xmin).sum(axis=0) + bias
        frac = max(xf + _frac_bits(w), _frac_bits(bias))
        values = np.array([hi.max(), lo.min()]) if len(hi) else np.zeros(1)
        out = layer.get_output_variable().type
        for t in (layer.get_attr("accum_t"), out):
            # A result type that rounds or saturates is the next quantizer, fused into the
            # layer by hls4ml: it must stay as it is.
            if t is out and not _plain(t.precision):
                continue
            if _widen(t, values, frac):
                changed.append(layer.name)
    return sorted(set(changed))


def _plain(p) -> bool:
    """A fixed-point type that truncates and wraps: pure storage, no quantization."""
    rnd, sat = getattr(p, "rounding_mode", None), getattr(p, "saturation_mode", None)
    return getattr(rnd, "name", "TRN") == "TRN" and getattr(sat, "name", "WRAP") == "WRAP"


def _is_xnor(p) -> bool:
    from hls4ml.model.types import XnorPrecisionType

    return isinstance(p, XnorPrecisionType)


def _widen(t, values: np.ndarray, frac: int | None = None) -> bool:
    """Give the named type ``t`` a signed fixed-point precision that holds ``values`` exactly
    (with at least ``frac`` fraction bits); False when it already does."""
    import copy

    p = t.precision
    if _is_xnor(p) or not hasattr(p, "integer"):
        return False
    frac = max(_frac_bits(values), frac or 0)
    hi, lo = float(np.max(values)), float(np.min(values))
    span = max(hi + 2.0**-frac, -lo, 2.0**-frac)  # signed range: [-2**(I-1), 2**(I-1) - ulp]
    integer = int(np.ceil(np.log2(span))) + 1
    pf = p.width - p.integer
    if p.signed and p.integer >= integer and pf >= frac:
        return False
    # A copy keeps the back end's precision class (which knows how to print itself as C++).
    new = copy.copy(p)
    new.signed = True
    new.integer = max(integer, p.integer)
    new.width = new.integer + max(frac, pf)
    t.precision = new
    return True


def _frac_bits(v: np.ndarray) -> int:
    """Fractional bits needed to hold every value of ``v`` exactly (v dyadic by the rules)."""
    for f in range(0, 64):
        if np.all(v * 2.0**f == np.round(v * 2.0**f)):
            return f
    raise TaperError("a weight or bias is not a short dyadic fraction")


# ---------------------------------------------------------------------------- project


def check_source(source: Path, input_type: str | None = None, display: str | None = None) -> None:
    """The exactness rules on a QONNX file as ``taper compile`` will read it."""
    from compiler.backends.hls4ml import rules
    from compiler.frontend.input_type import insert_input_quant, parse_input_type
    from compiler.frontend.load import load_qonnx

    model = load_qonnx(source)
    if input_type:
        model = insert_input_quant(model, parse_input_type(input_type))
    rules.check(model, display or str(source))


def read_meta(d: Path) -> dict | None:
    p = Path(d) / HLS_DIR / META
    return json.loads(p.read_text()) if p.is_file() else None


def write_project(d: Path, out: Path, final: Path, quiet: bool = False) -> dict:
    """Write the hls4ml project of build directory ``d`` into ``out``, a staging directory
    that will be moved to ``final`` (the path hls4ml records in its config)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from compiler import ir
    from compiler.backends.hls4ml import rules

    d, out = Path(d), Path(out)
    m = ir.load(d)
    model = ModelWrapper(str(d / REFERENCE_ONNX))
    rules.check(model, m.source)
    model = prepare(model, m.source)
    project = f"taper_{m.name}"
    hm, widened = _convert(model, out, project, m.part, m.clock_mhz)
    with _quiet():
        hm.write()
    yml = out / "hls4ml_config.yml"
    yml.write_text(
        yml.read_text().replace(f"OutputDir: {out}", f"OutputDir: {Path(final).resolve()}")
    )
    meta = {
        "project": project,
        "part": m.part,
        "clock_mhz": m.clock_mhz,
        "io_type": "io_stream",
        "input_precision": str(hm.get_input_variables()[0].type.precision),
        "in_size": int(hm.get_input_variables()[0].size()),
        "out_size": int(hm.get_output_variables()[0].size()),
        "widened_accumulators": widened,
    }
    write_json(out / META, meta)
    if not quiet:
        print(f"[taper] hls4ml project ({project}, Vitis, io_stream)", flush=True)
    return meta


def hls_model(d: Path):
    """The hls4ml ModelGraph of an existing project (for hls4ml's own build)."""
    from compiler import ir

    d = Path(d)
    meta = read_meta(d)
    if meta is None:
        raise TaperError(f"{d}: no hls4ml project (build it with --backend hls4ml)")
    m = ir.load(d)
    from qonnx.core.modelwrapper import ModelWrapper

    model = prepare(ModelWrapper(str(d / REFERENCE_ONNX)), m.source)
    hm, _ = _convert(model, d / HLS_DIR, meta["project"], m.part, m.clock_mhz)
    return hm


def _convert(model, out: Path, project: str, part: str, clock_mhz: float):
    import hls4ml

    q = _input_quant(model)
    with _quiet():
        cfg = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend="Vitis")
        cfg["LayerName"][model.graph.input[0].name]["Precision"]["result"] = quant_precision(
            model, q
        )
        hm = hls4ml.converters.convert_from_onnx_model(
            model,
            output_dir=str(out),
            project_name=project,
            backend="Vitis",
            io_type="io_stream",
            part=part,
            clock_period=round(1000.0 / clock_mhz, 3),
            hls_config=cfg,
        )
    return hm, exact_accumulators(hm)


@contextlib.contextmanager
def _quiet():
    """hls4ml prints its topology and warns freely; a build log wants neither."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield
