"""Property: any Brevitas MLP taper can train (1-4 layers, random widths, per-layer bits 1-8,
signed or unsigned activations) exports, compiles and verifies bit-exact; trained for hls4ml
(no float BatchNorm), it is bit-exact against hls4ml's C-simulation too."""

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import ir
from compiler.frontend.compile import CompileOptions, compile_model
from compiler.qat.data import load
from compiler.qat.recipe import Recipe
from compiler.qat.train import build_model, predict, train
from compiler.sim import bitexact
from compiler.verify import _output_to_int, make_inputs, verify

# Each example trains, exports (~6 s), compiles (~10 s) and builds its RTL with Verilator
# (~20 s on CI's two cores): 4 in CI; TAPER_PROPERTY_EXAMPLES=50 for a longer search.
EXAMPLES = int(os.environ.get("TAPER_PROPERTY_EXAMPLES", "4"))
# each hls4ml example also builds a C-simulation with g++
HLS4ML_EXAMPLES = int(os.environ.get("TAPER_HLS4ML_EXAMPLES", "3"))


BATCHNORM = st.booleans()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These MLPs train faster on one thread (and two test workers share two cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@st.composite
def mlps(draw, batchnorm=BATCHNORM, min_act_bits=1):
    n_layers = draw(st.integers(1, 4))
    hidden = draw(st.lists(st.integers(4, 32), min_size=n_layers - 1, max_size=n_layers - 1))
    wbits = draw(st.lists(st.integers(1, 8), min_size=n_layers, max_size=n_layers))
    abits = draw(
        st.lists(st.integers(min_act_bits, 8), min_size=n_layers - 1, max_size=n_layers - 1)
    )
    return {
        "name": "prop",
        "arch": {"hidden": hidden, "batchnorm": draw(batchnorm)},
        "input": {"bits": draw(st.integers(2, 8))},
        "quant": {
            "weights": {"policy": "explicit", "bits": wbits},
            "activations": {"policy": "explicit", "bits": abits}
            if abits
            else {"policy": "uniform", "bits": 2},
            "act_signed": draw(st.booleans()),
        },
        "dataset": {"name": "digits", "holdout": 360},
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.02},
        "seed": draw(st.integers(0, 1000)),
    }


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=mlps())
def test_random_mlp_is_bit_exact(tmp_path_factory, spec):
    d = tmp_path_factory.mktemp("prop")
    recipe = Recipe.model_validate(spec)
    train(recipe, d, quiet=True)
    m = compile_model(d / "model.onnx", d / "hw", CompileOptions(target_fps=1e6), quiet=True)
    v = verify(d / "hw", samples=200, against=["qonnx", "finn", "rtl"], data="digits")
    for ref, res in v.references.items():
        assert res.mismatches == 0, (spec, ref, res.first)
    assert abs(v.references["rtl"].measured["ii_cycles"] - m.ii_cycles) <= 2, spec
    # and Brevitas itself, on the same inputs
    assert ir.load(d / "hw") == m
    x, _ = make_inputs(m, 200, "digits")
    model = build_model(recipe, load("digits", seed=0, holdout=360), recipe.seed)
    model.load_state_dict(torch.load(d / "checkpoint.pt", weights_only=True))
    want = np.round(_output_to_int(m, predict(model, x)))
    got = bitexact.run_hardware(m, bitexact.quantize_input(m.input_edge, x))[m.output_tensor]
    np.testing.assert_array_equal(got, want.reshape(got.shape))


@pytest.mark.slow
@settings(
    max_examples=HLS4ML_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# hls4ml's rules refuse 1-bit activations (tests/test_hls4ml.py)
@given(spec=mlps(batchnorm=st.sampled_from([False, "fold"]), min_act_bits=2))
def test_random_hls4ml_mlp_is_bit_exact(tmp_path_factory, spec):
    from compiler import flow

    d = tmp_path_factory.mktemp("prop_hls")
    recipe = Recipe.model_validate(spec)
    train(recipe, d, quiet=True)
    compile_model(d / "model.onnx", d / "hw", CompileOptions(target_fps=1e6), quiet=True)
    flow.run(d / "hw", None, flow.Options(backend="hls4ml"), only=["hls4ml"], quiet=True)
    v = verify(d / "hw", samples=200, against=["qonnx", "hls4ml"], data="digits", quiet=True)
    for ref, res in v.references.items():
        assert res.mismatches == 0, (spec, ref, res.first)
