"""``taper compile``: QONNX -> FINN passes -> IR, written atomically into a build directory."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compiler import ir
from compiler.artifacts import write_json
from compiler.boards import board as get_board
from compiler.errors import TaperError

COMPILE_JSON = "compile.json"
REFERENCE_ONNX = "reference.onnx"
FINN_HW_ONNX = "finn_hw.onnx"
FINN_FOLDED_ONNX = "finn_folded.onnx"


@dataclass(frozen=True)
class CompileOptions:
    board: str = "pynq-z2"
    clock_mhz: float = 100.0
    target_fps: float | None = None
    folding: str | None = None  # path to a folding JSON
    input_type: str | None = None
    recipe: str | None = None  # recipe name when compiled from a recipe

    def key(self, source_hash: str, folding_hash: str | None) -> dict:
        return {
            "source_sha256": source_hash,
            "folding_sha256": folding_hash,
            "compiler": _code_hash(),
            **self.__dict__,
        }


def _code_hash() -> str:
    """Hash of the compiler's own source: a build made by other code is stale."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_folding(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise TaperError(f"{p}: folding file not found")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise TaperError(f"{p}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(cfg, dict):
        raise TaperError(f'{p}: expected a JSON object mapping layer names to {{"PE", "SIMD"}}')
    return cfg


def compile_model(source: Path, out: Path, opts: CompileOptions, quiet: bool = False) -> ir.Model:
    """Compile QONNX ``source`` into ``out`` (IR, reference models, report); resumable."""
    source = Path(source)
    out = Path(out)
    b = get_board(opts.board)
    if opts.target_fps is not None and opts.folding:
        raise TaperError("--target-fps and --folding exclude each other")
    folding = _read_folding(opts.folding) if opts.folding else None
    if not source.is_file():
        raise TaperError(f"{source}: file not found")
    key = opts.key(_sha256(source), _sha256(Path(opts.folding)) if opts.folding else None)
    done = out / COMPILE_JSON
    if done.is_file() and (out / ir.serialize.IR_JSON).is_file():
        try:
            if json.loads(done.read_text()).get("key") == key:
                _say(quiet, f"[taper] {out} is up to date")
                return ir.load(out)
        except (json.JSONDecodeError, OSError):
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model = _compile(source, tmp, opts, b, folding, key)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(
        quiet,
        f"[taper] {model.name}: {len(model.layers)} layers, II {model.ii_cycles} cycles, "
        f"{model.fps:,.0f} FPS at {model.clock_mhz:g} MHz -> {out}",
    )
    return model


def _compile(source: Path, out: Path, opts: CompileOptions, b, folding, key) -> ir.Model:
    from compiler.frontend import edges as E
    from compiler.frontend import finn_passes as F
    from compiler.frontend.input_type import insert_input_quant, parse_input_type
    from compiler.frontend.load import load_qonnx
    from compiler.frontend.lower import lower_chain, sanitize
    from compiler.frontend.precision import as_float64

    src = str(source)
    ft = parse_input_type(opts.input_type) if opts.input_type else None
    with F.finn_environment(out):
        model = load_qonnx(source)
        if ft is not None:
            model = insert_input_quant(model, ft)
        model.save(str(out / REFERENCE_ONNX))
        model64 = as_float64(model)
        input_quant = E.extract_input_quant(model)
        E.extract_input_quant(model64)
        try:
            hw = F.to_hw(F.streamline(model))
        except Exception as e:  # FINN's passes raise anything on graphs they cannot take
            raise TaperError(
                f"{src}: FINN could not streamline the graph ({type(e).__name__}: {e})"
            ) from None
        edges = E.split_edges(hw, input_quant, src)
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
        hw.save(str(out / FINN_HW_ONNX))
        chain = F.hw_only(hw, edges.first_hw, edges.last_hw)
        chain = F.specialize(chain, b.part)
        if folding is not None:
            chain = F.apply_folding(chain, folding, opts.folding)
        elif opts.target_fps:
            chain = F.set_folding(chain, math.ceil(opts.clock_mhz * 1e6 / opts.target_fps))
        est = F.estimates(chain, b.part)
        chain.save(str(out / FINN_FOLDED_ONNX))
        layers, fifos = lower_chain(chain, src)
    # The specialized names differ from the generic ones: map by position.
    generic_hw = [n for n in hw.graph.node if F.is_hw(n)]
    if edges.input.kind == "thresholds":
        generic_hw = generic_hw[1:]
    finn_map = {layer.name: n.output[0] for layer, n in zip(layers, generic_hw, strict=True)}
    m = ir.Model(
        name=sanitize(opts.recipe or source.stem),
        input_edge=edges.input,
        layers=layers,
        output_edge=edges.output,
        fifos=fifos,
        board=b.name,
        part=b.part,
        clock_mhz=opts.clock_mhz,
        source=str(source),
        estimates={sanitize(k): v for k, v in est.items()},
    )
    try:
        m.check()
    except ValueError as e:
        raise TaperError(f"{src}: {e}") from None
    ir.save(m, out)
    from compiler.report import write_report

    write_report(m, out)
    write_json(
        out / COMPILE_JSON,
        {
            "key": key,
            "finn_tensors": finn_map,
            "finn_input": edges.hw_input_tensor,
            "input_type": str(ft) if ft else None,
            "recipe": opts.recipe,
            "checkpoint": str(source.parent.resolve() / "checkpoint.pt") if opts.recipe else None,
        },
    )
    return m


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)
