from pathlib import Path

import pytest
import yaml

from compiler.errors import TaperError
from compiler.qat.recipe import RECIPE_DIR, available, load_recipe

REQUIRED = [
    "tfc_w1a1",
    "tfc_w1a2",
    "tfc_w2a2",
    "sfc_w2a2",
    "lfc_w1a1",
    "tfc_w1a1_bin",
    "lfc_w1a1_bin",
    "tfc_mixed_progressive",
    "lfc_mixed_progressive",
    "digits_mlp",
    "cnv_w1a1",
    "cnv_w1a2",
    "cnv_w2a2",
    "cnv_mixed_progressive",
    "mnist_cnn_mixed",
    "digits_cnn",
]
SHAPES = {"tfc": [64] * 3, "sfc": [256] * 3, "lfc": [1024] * 3}


def test_required_recipes_exist_and_validate():
    assert set(REQUIRED) <= set(available())
    for name in available():
        r = load_recipe(name)
        assert r.name == name
        # one weight bitwidth per layer, one activation per layer but the output one
        n_hidden = len(r.arch.hidden) + (len(r.arch.conv) if r.arch.type == "cnn" else 0)
        assert len(r.weight_bits) == n_hidden + 1
        assert len(r.act_bits) == n_hidden
        family = name.split("_")[0]
        if family in SHAPES:
            assert r.arch.hidden == SHAPES[family] and r.dataset.name == "mnist"


@pytest.mark.parametrize(
    "name,w,a",
    [
        ("tfc_w1a1", 1, 1),
        ("tfc_w1a2", 1, 2),
        ("tfc_w2a2", 2, 2),
        ("sfc_w2a2", 2, 2),
        ("lfc_w1a1", 1, 1),
        ("tfc_w1a1_bin", 1, 1),
        ("lfc_w1a1_bin", 1, 1),
    ],
)
def test_uniform_recipe_bits(name, w, a):
    r = load_recipe(name)
    assert r.weight_bits == [w] * 4 and r.act_bits == [a] * 3


def test_binarized_input_recipes_are_their_8_bit_input_twins_but_for_the_input():
    for name in ("tfc_w1a1", "lfc_w1a1"):
        base, binar = load_recipe(name), load_recipe(f"{name}_bin")
        assert (base.input.mode, base.input.bits) == ("unsigned", 8)
        assert (binar.input.mode, binar.input.bits) == ("bipolar", 1)
        assert binar.model_dump(exclude={"name", "input"}) == base.model_dump(
            exclude={"name", "input"}
        )


def test_progressive_recipes_decrease_with_depth():
    for name in ("tfc_mixed_progressive", "lfc_mixed_progressive"):
        r = load_recipe(name)
        assert r.weight_bits == sorted(r.weight_bits, reverse=True)
        assert r.weight_bits[0] > r.weight_bits[-1]


def test_digest_changes_with_content(tmp_path):
    base = yaml.safe_load((RECIPE_DIR / "digits_mlp.yaml").read_text())
    p = tmp_path / "a.yaml"
    p.write_text(yaml.safe_dump(base))
    d0 = load_recipe(p).digest()
    base["train"]["lr"] = 0.5
    p.write_text(yaml.safe_dump(base))
    assert load_recipe(p).digest() != d0


def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((RECIPE_DIR / "digits_mlp.yaml").read_text())
    edit(data)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


BAD = [
    (lambda d: d["arch"].update(width=3), "unknown field 'arch.width'"),
    (lambda d: d.update(colour="red"), "unknown field 'colour'"),
    (
        lambda d: d["quant"].update(weights={"policy": "uniform", "bits": 0}),
        "field 'quant.weights.bits': Input should be greater than or equal to 1, got 0",
    ),
    (
        lambda d: d["quant"].update(weights={"policy": "uniform", "bits": 9}),
        "field 'quant.weights.bits': Input should be less than or equal to 8, got 9",
    ),
    (
        lambda d: d["quant"].update(activations={"policy": "explicit", "bits": [2, 12]}),
        "field 'quant.activations.bits.1': Input should be less than or equal to 8, got 12",
    ),
    (
        lambda d: d["input"].update(bits=17),
        "field 'input.bits': Input should be less than or equal to 16, got 17",
    ),
    (
        lambda d: d["quant"].update(weights={"policy": "explicit", "bits": [4, 2]}),
        "quant.weights: expected 3 bitwidths (one per layer), got 2",
    ),
    (lambda d: d["dataset"].update(name="imagenet"), "field 'dataset.name'"),
    (
        lambda d: d["input"].update(mode="bipolar"),
        "field 'input': input.mode bipolar is 1 bit: set input.bits to 1, got 4",
    ),
    (
        lambda d: d["input"].update(mode="signed"),
        "field 'input.mode': Input should be 'unsigned' or 'bipolar', got 'signed'",
    ),
]


@pytest.mark.parametrize("edit,message", BAD)
def test_bad_recipe_is_one_line_exit_2_nothing_written(tmp_path, taper, edit, message):
    recipe = _variant(tmp_path, edit)
    out = tmp_path / "out"
    r = taper("train", recipe, "--out", out)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"taper: error: {recipe}: ")
    assert message in r.stderr
    assert not out.exists()


def test_load_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(TaperError, match="unknown recipe 'nosuch': expected one of .*tfc_w2a2"):
        load_recipe("nosuch")
    with pytest.raises(TaperError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("arch: [unclosed\n")
    with pytest.raises(TaperError, match=r"broken.yaml: line \d+ not valid YAML"):
        load_recipe(p)
    p.write_text("- a list\n")
    with pytest.raises(TaperError, match="expected a mapping"):
        load_recipe(p)


def test_unknown_recipe_cli(tmp_path, taper):
    out = tmp_path / "out"
    r = taper("train", "nosuch", "--out", out)
    assert r.returncode == 2
    assert r.stderr.startswith("taper: error: unknown recipe 'nosuch'")
    assert r.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "recipe,make,message",
    [
        ("tfc_w2a2", lambda d: None, "missing MNIST file 'train-images-idx3-ubyte'"),
        ("digits_mlp", lambda d: None, "data set 'digits' is built in"),
        (
            "tfc_w2a2",
            lambda d: (d / "train-images-idx3-ubyte").write_bytes(b"junk"),
            "not an unsigned-byte idx file",
        ),
    ],
)
def test_bad_data_dir(tmp_path, taper, recipe, make, message):
    data = tmp_path / "data"
    data.mkdir()
    make(data)
    out = tmp_path / "out"
    r = taper("train", recipe, "--out", out, "--data-dir", data)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1
    assert not out.exists()


def test_data_dir_not_a_directory(tmp_path, taper):
    r = taper("train", "tfc_w2a2", "--out", tmp_path / "o", "--data-dir", tmp_path / "nope")
    assert r.returncode == 2
    assert "--data-dir is not a directory" in r.stderr
