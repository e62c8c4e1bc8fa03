"""The front end's two steps: ``frontend`` (QONNX -> FINN's HW-layer graph, host edges found
once) and ``lower`` (specialize, fold, estimate, lower into the IR)."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from compiler import build as B
from compiler import ir
from compiler.boards import board as get_board
from compiler.errors import TaperError
from compiler.ir.model import InputEdge, OutputEdge, _Node
from compiler.ir.serialize import load_object, save_object

FRONTEND_NPZ = "frontend.npz"


@dataclass(eq=False)
class FrontendRecord(_Node):
    """What the front end found: the host edges, where the hardware starts and ends in FINN's
    graph, and the FINN tensor each hardware node writes (in order)."""

    source: str  # what messages call the model (the user's file or recipe)
    input_edge: InputEdge
    output_edge: OutputEdge
    first_hw: str
    last_hw: str
    finn_input: str
    hw_outputs: list[str] = field(default_factory=list)
    input_type: str | None = None
    recipe: str | None = None  # the recipe the model was trained from, when known
    checkpoint: str | None = None
    rnn: bool = False  # a recurrent model: lowered from reference.onnx, no FINN graph


def save_record(rec: FrontendRecord, d: Path) -> None:
    save_object(rec, Path(d) / B.FRONTEND_JSON, Path(d) / FRONTEND_NPZ)


def load_record(d: Path) -> FrontendRecord:
    d = Path(d)
    if not (d / B.FRONTEND_JSON).is_file():
        raise TaperError(f"{d}: no {B.FRONTEND_JSON} (run `taper build` on it first)")
    r = load_object(
        d / B.FRONTEND_JSON, d / FRONTEND_NPZ, {FrontendRecord.__name__: FrontendRecord}
    )
    r.hw_outputs = list(r.hw_outputs)
    return r


def model_name(text: str) -> str:
    """A name that is a valid Verilog and C++ identifier and file name, decided once: ASCII
    letters, digits and single underscores (Verilator renames ``__``), a letter first, at most
    40 characters (a longer one is cut and keeps a hash of the whole)."""
    s = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text)
    s = "_".join(p for p in s.split("_") if p) or "model"
    if not s[0].isalpha():
        s = "m_" + s
    if len(s) > 40:
        s = s[:32].rstrip("_") + "_" + hashlib.sha256(text.encode()).hexdigest()[:7]
    return s


def read_folding(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise TaperError(f"{p}: folding file not found")
    try:
        cfg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaperError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise TaperError(f'{p}: expected a JSON object mapping layer names to {{"PE", "SIMD"}}')
    return cfg


def run_frontend(
    model_onnx: Path,
    stage: Path,
    source: str,
    input_type: str | None = None,
    recipe: str | None = None,
    checkpoint: str | None = None,
) -> FrontendRecord:
    """QONNX -> reference.onnx (what references run), finn_hw.onnx and the record."""
    from compiler.frontend import edges as E
    from compiler.frontend import finn_passes as F
    from compiler.frontend.input_type import insert_input_quant, parse_input_type
    from compiler.frontend.load import load_qonnx
    from compiler.frontend.precision import as_float64
    from compiler.frontend.rnn import rnn_meta

    ft = parse_input_type(input_type) if input_type else None
    with F.finn_environment(stage / ".finn"):
        model = load_qonnx(model_onnx)
        if rnn_meta(model.model) is not None:
            return _frontend_rnn(model, stage, source, ft, recipe, checkpoint)
        if ft is not None:
            model = insert_input_quant(model, ft)
        model.save(str(stage / B.REFERENCE_ONNX))
        model64 = as_float64(model)
        input_quant = E.extract_input_quant(model)
        E.extract_input_quant(model64)
        try:
            hw = F.to_hw(F.streamline(model))
        except TaperError:
            raise
        except Exception as e:  # FINN's passes raise anything on graphs they cannot take
            raise TaperError(
                f"{source}: FINN could not streamline the graph ({type(e).__name__}: {e})"
            ) from None
        edges = E.split_edges(hw, input_quant, source)
        # FINN derives thresholds by folding the float ops (BatchNorm, scales, biases) into
        # them; in float32 some land off by one at boundaries. The same passes in float64
        # give the exact ones, which replace them.
        try:
            F.exact_thresholds(hw, F.to_hw(F.streamline(model64)))
        except Exception as e:
            print(
                f"[taper] warning: float64 threshold derivation failed ({type(e).__name__}); "
                "keeping FINN's float32 thresholds",
                file=sys.stderr,
            )
        hw.save(str(stage / B.FINN_HW_ONNX))
    from compiler.frontend.lower import group_nodes

    generic = [n for n in hw.graph.node if F.is_hw(n)]
    if edges.input.kind == "thresholds":
        generic = generic[1:]  # FINN's input thresholding is the host's input edge
    rec = FrontendRecord(
        source=source,
        input_edge=edges.input,
        output_edge=edges.output,
        first_hw=edges.first_hw,
        last_hw=edges.last_hw,
        finn_input=edges.hw_input_tensor,
        hw_outputs=[g[-1].output[0] for g in group_nodes(generic)],
        input_type=str(ft) if ft else None,
        recipe=recipe,
        checkpoint=checkpoint,
    )
    save_record(rec, stage)
    return rec


def _frontend_rnn(model, stage: Path, source: str, ft, recipe, checkpoint) -> FrontendRecord:
    """A recurrent model (FINN has no recurrent layer): the graph is the reference as
    exported; the host edges and layers are read from it now so that a bad graph stops here."""
    from compiler.frontend.rnn import lower_rnn

    if ft is not None:
        raise TaperError(f"{source}: --input-type: a recurrent model quantizes its own input")
    edge, layers, out = lower_rnn(model, source)
    model.save(str(stage / B.REFERENCE_ONNX))
    rec = FrontendRecord(
        source=source,
        input_edge=edge,
        output_edge=out,
        first_hw="",
        last_hw="",
        finn_input="",
        hw_outputs=[layer.output for layer in layers],
        recipe=recipe,
        checkpoint=checkpoint,
        rnn=True,
    )
    save_record(rec, stage)
    return rec


MAX_FPS = "max"  # --target-fps max: the fastest folding that fits the board


@dataclass(frozen=True)
class LowerOptions:
    name: str
    board: str = "pynq-z2"
    clock_mhz: float = 100.0
    # frames per second, "max", or None: a FINN model's own folding when it comes with HW
    # layers, else "max"
    target_fps: float | str | None = None
    folding: str | None = None  # path to a folding JSON


def check_lower_options(o: LowerOptions) -> None:
    get_board(o.board)
    if not (math.isfinite(o.clock_mhz) and 1 <= o.clock_mhz <= 2000):
        raise TaperError(f"--clock-mhz: expected a clock from 1 to 2000 MHz, got {o.clock_mhz}")
    fps = o.target_fps
    if isinstance(fps, str) and fps != MAX_FPS:
        raise TaperError(f"--target-fps: expected a frame rate or '{MAX_FPS}', got '{fps}'")
    if isinstance(fps, float | int):
        if not (math.isfinite(fps) and fps > 0):
            raise TaperError(f"--target-fps: expected a positive frame rate, got {fps}")
        if fps > o.clock_mhz * 1e6:
            raise TaperError(
                f"--target-fps: at most one frame per clock cycle ({o.clock_mhz * 1e6:,.0f} at "
                f"{o.clock_mhz:g} MHz), got {fps:,.0f}"
            )
    if fps is not None and o.folding:
        raise TaperError("--target-fps and --folding exclude each other")
    if o.folding:
        read_folding(o.folding)


def run_lower(build: Path, stage: Path, o: LowerOptions) -> ir.Model:
    """finn_hw.onnx + the record -> finn_folded.onnx and the IR before FIFO sizing."""
    from qonnx.core.modelwrapper import ModelWrapper

    from compiler.frontend import finn_passes as F
    from compiler.frontend.lower import group_nodes, lower_chain

    check_lower_options(o)
    b = get_board(o.board)
    rec = load_record(build)
    src = rec.source
    if rec.rnn:
        return _lower_rnn(build, stage, o, rec)
    with F.finn_environment(stage / ".finn"):
        hw = ModelWrapper(str(Path(build) / B.FINN_HW_ONNX))
        chain = F.hw_only(hw, rec.first_hw, rec.last_hw)
        # FINN specializes and estimates for a Xilinx part; an ECP5 board borrows the Z-7020's
        finn_part = b.part if b.family == "xilinx" else "xc7z020clg400-1"
        chain = F.specialize(chain, finn_part)
        if o.folding:
            host = (
                {"LabelSelect": "the model's TopK is the host's output edge (class labels)"}
                if rec.output_edge.labels
                else {}
            )
            chain = F.apply_folding(chain, read_folding(o.folding), o.folding, host)
            how = f"folding {Path(o.folding).name}"
        elif o.target_fps is None and finn_folded(build):
            how = "the FINN model's own folding"
        else:
            chain, how = fold(chain, src, o, b)
        est = F.estimates(chain, finn_part)
        chain.save(str(stage / B.FINN_FOLDED_ONNX))
        layers, fifos = lower_chain(chain, src)
    m = ir.Model(
        name=o.name,
        input_edge=rec.input_edge,
        layers=layers,
        output_edge=rec.output_edge,
        fifos=fifos,
        board=b.name,
        part=b.part,
        clock_mhz=o.clock_mhz,
        source=src,
        estimates=_layer_estimates(est, group_nodes(chain.graph.node)),
    )
    _estimate_and_check(m, how, src)
    if len(rec.hw_outputs) != len(m.layers):
        raise TaperError(
            f"{src}: {len(m.layers)} hardware layers, but the front end found "
            f"{len(rec.hw_outputs)} HW nodes"
        )
    (stage / B.LOWERED_DIR).mkdir()
    ir.save(m, stage / B.LOWERED_DIR)
    return m


def _estimate_and_check(m: ir.Model, how: str, src: str) -> None:
    """taper's cost-model estimate per layer into ``m.estimates`` (beside FINN's), the
    folding note, and the IR's consistency check (a one-line error naming the model)."""
    ours = taper_estimate(m)
    for layer in m.layers:
        e = ours["layers"][layer.name]
        m.estimates.setdefault(layer.name, {}).update(
            taper_lut=round(e["lut"]), taper_ff=round(e["ff"]), taper_bram36=e["bram36"]
        )
    m.fold_note = f"{how}; {fold_summary(m, ours)}"  # type: ignore[attr-defined]
    try:
        m.check()
    except ValueError as e:
        raise TaperError(f"{src}: {e}") from None


def _lower_rnn(build: Path, stage: Path, o: LowerOptions, rec: FrontendRecord) -> ir.Model:
    """A recurrent model: its layers from reference.onnx, folded by taper's cost model (or a
    folding file naming the layers)."""
    import dataclasses

    from qonnx.core.modelwrapper import ModelWrapper

    from compiler.frontend.rnn import lower_rnn

    b = get_board(o.board)
    src = rec.source
    _, layers, _ = lower_rnn(ModelWrapper(str(Path(build) / B.REFERENCE_ONNX)), src)
    if o.folding:
        cfg = read_folding(o.folding)
        unknown = sorted(set(cfg) - {x.name for x in layers})
        if unknown:
            raise TaperError(
                f"{o.folding}: no layer {unknown[0]} (layers: {', '.join(x.name for x in layers)})"
            )
        for i, x in enumerate(layers):
            f = cfg.get(x.name, {})
            lanes = [f.get(k, 1) for k in ("PE", "SIMD")] if isinstance(f, dict) else []
            if set(f) - {"PE", "SIMD"} or not all(type(v) is int and v >= 1 for v in lanes):
                raise TaperError(
                    f'{o.folding}: {x.name}: expected {{"PE": n, "SIMD": n}} with n >= 1'
                )
            layers[i] = dataclasses.replace(x, pe=lanes[0], simd=lanes[1])
        how = f"folding {Path(o.folding).name}"
    else:
        probe = ir.Model(
            name=o.name,
            input_edge=rec.input_edge,
            layers=layers,
            output_edge=rec.output_edge,
            board=b.name,
            clock_mhz=o.clock_mhz,
        )
        f, how = choose(probe, src, o, b)
        layers = list(f.layers)
    m = ir.Model(
        name=o.name,
        input_edge=rec.input_edge,
        layers=layers,
        output_edge=rec.output_edge,
        fifos=[ir.FIFO(tensor=x.input, depth=2, width=x.in_width) for x in layers],
        board=b.name,
        part=b.part,
        clock_mhz=o.clock_mhz,
        source=src,
    )
    _estimate_and_check(m, how, src)
    (stage / B.LOWERED_DIR).mkdir()
    ir.save(m, stage / B.LOWERED_DIR)
    return m


def _layer_estimates(est: dict, groups) -> dict[str, dict[str, float]]:
    """FINN's estimates per IR layer: the sums over the layer's FINN nodes, under the layer's
    name (its last node's)."""
    from compiler.frontend.lower import sanitize

    out: dict[str, dict[str, float]] = {}
    for g in groups:
        acc: dict[str, float] = {}
        for n in g:
            for k, v in est.get(n.name, {}).items():
                acc[k] = acc.get(k, 0) + v
        out[sanitize(g[-1].name)] = acc
    return out


def finn_folded(build: Path) -> bool:
    """The user's model came with FINN HW layers (a FINN user's folding)."""
    import onnx

    from compiler.frontend.load import FINN_HW

    ref = onnx.load(str(Path(build) / B.REFERENCE_ONNX), load_external_data=False)
    return any(n.domain.startswith(FINN_HW) for n in ref.graph.node)


def taper_estimate(m: ir.Model) -> dict:
    """The RTL cost model's estimate of ``m`` (LUT, FF, BRAM36 per layer and in total)."""
    from compiler.backends.rtl import cost as K

    return K.estimate(m, get_board(m.board).bram36)


def _folding_text(layer: ir.Layer) -> str:
    if layer.kind in ("matvec", "recurrent"):
        return f"PE {layer.pe} SIMD {layer.simd}"
    if layer.kind == "window":
        return f"SIMD {layer.simd}"
    return f"PE {layer.pe}"


def fold_summary(m: ir.Model, est: dict) -> str:
    b = get_board(m.board)
    per = ", ".join(f"{x.name} {_folding_text(x)}" for x in m.layers)
    return (
        f"{per}; est. {est['lut']:,.0f} LUT ({est['lut'] / b.lut:.0%}), "
        f"{est['bram36']:g} BRAM36 ({est['bram36'] / b.bram36:.0%}) of the {b.name}"
    )


def fold(chain, src: str, o: LowerOptions, b) -> tuple[object, str]:
    """Fold FINN's HW chain by taper's RTL cost model (``choose``). Returns the folded chain
    and how the folding was chosen."""
    from compiler.frontend import finn_passes as F
    from compiler.frontend.lower import group_nodes, lower_chain

    layers, _ = lower_chain(chain, src)
    probe = ir.Model(
        name=o.name,
        input_edge=InputEdge(
            kind="identity", in_shape=(1,), shape=(1,), out_type=layers[0].input_type
        ),
        layers=layers,
        output_edge=OutputEdge(),
        board=b.name,
        clock_mhz=o.clock_mhz,
    )
    f, how = choose(probe, src, o, b)
    config = {}
    for group, layer in zip(group_nodes(chain.graph.node), f.layers, strict=True):
        for node in group:
            # every FINN node of the layer folds its channels as the layer does
            fields = F.fold_sizes(node)
            if layer.kind == "matvec":
                config[node.name] = {"PE": layer.pe, "SIMD": layer.simd}
            else:
                lanes = layer.simd if layer.kind == "window" else layer.pe
                config[node.name] = {k: lanes for k in fields}
    return F.apply_folding(chain, config, src), how


def choose(probe: ir.Model, src: str, o: LowerOptions, b):
    """The folding of ``probe``'s layers by taper's RTL cost model: for a target FPS the
    cheapest reaching it, for "max" (or no target) the fastest whose estimate fits the board
    with the model's margins. Returns the cost model's Folding and how it was chosen."""
    from compiler.backends.rtl import cost as K
    from compiler.frontend import finn_passes as F

    hz = o.clock_mhz * 1e6
    margins = f"{K.LUT_MARGIN:.0%} of its LUTs, {K.BRAM_MARGIN:.0%} of its BRAM36"
    if o.target_fps is None or o.target_fps == MAX_FPS:
        f = K.choose_folding(probe, b.lut, b.bram36, None)
        how = f"fastest folding that fits the {b.name} ({margins})"
        if not f.fits:
            F._say(
                "warning",
                f"{src}: even fully folded the estimate ({f.estimate['lut']:,.0f} LUT, "
                f"{f.estimate['bram36']:g} BRAM36) exceeds {margins} of the {b.name}",
            )
    else:
        fps = float(o.target_fps)
        try:
            f = K.choose_folding(probe, b.lut, b.bram36, max(1, math.floor(hz / fps)))
        except K.Unreachable as e:
            raise TaperError(
                f"{src}: target {fps:,.0f} FPS: layer {e.layer} takes at least {e.ii:,} cycles "
                f"per frame with every lane parallel, at most {hz / e.ii:,.0f} FPS at "
                f"{o.clock_mhz:g} MHz"
            ) from None
        how = f"cheapest folding reaching {fps:,.0f} FPS"
        if not f.fits:
            best = K.choose_folding(probe, b.lut, b.bram36, None)
            e = f.estimate
            over = e["lut"] > b.lut or e["bram36"] > b.bram36
            where = (
                f"the {b.name}'s {b.lut:,} LUT, {b.bram36} BRAM36"
                if over
                else f"{margins} of the {b.name}"
            )
            then = (
                f"the fastest folding that fits reaches {hz / best.ii:,.0f} FPS (--target-fps max)"
                if best.fits
                else "no folding fits by the estimate"
            )
            text = (
                f"{src}: target {fps:,.0f} FPS: its cheapest folding is estimated at "
                f"{e['lut']:,.0f} LUT, {e['bram36']:g} BRAM36, over {where}; {then}"
            )
            if over:
                raise TaperError(text)
            F._say("warning", text)
    return f, how


# ---------------------------------------------------------------------------- Python API


@dataclass(frozen=True)
class CompileOptions:
    board: str = "pynq-z2"
    clock_mhz: float = 100.0
    target_fps: float | None = None
    folding: str | None = None  # path to a folding JSON
    input_type: str | None = None
    recipe: str | None = None  # recipe name when compiled from a recipe's export


def compile_model(source: Path, out: Path, opts: CompileOptions, quiet: bool = False) -> ir.Model:
    """Compile QONNX ``source`` into the build directory ``out`` (steps up to ``lower``)."""
    from compiler import flow

    src = flow.Source.onnx(Path(source), recipe=opts.recipe)
    o = flow.Options(
        board=opts.board,
        clock_mhz=opts.clock_mhz,
        target_fps=opts.target_fps,
        folding=opts.folding,
        input_type=opts.input_type,
    )
    b = flow.run(out, src, o, until="fifo", quiet=quiet)
    return ir.load(b.path)
