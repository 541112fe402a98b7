import subprocess
import sys

import numpy as np
import pytest

from edgeslim.errors import RecipeError
from edgeslim.recipe import load_recipe
from edgeslim.runtime import load

from conftest import STATIC_RECIPE, write_recipe



def test_static_bundle_is_a_table_run_by_numpy_alone(static_run):
    report, bundle = static_run
    (result,) = report.results
    assert result.backend == "static" and result.providers == ["numpy"]
    assert result.accuracy.teacher_cosine_mean > 0.5 and result.latency_ms.kind == "measured"
    step = [s for s in result.steps if s["step"] == "static_embeddings"][0]
    assert step["library"] == "model2vec" and step["dtype"] == "float16"
    table = np.load(bundle / "embeddings.npy")
    assert table.dtype == np.float16 and table.shape[1] == 32
    script = (
        "import sys; from edgeslim.runtime import load; "
        f"v = load({str(bundle)!r}).encode(['a static sentence', 'another one']); "
        "print(v.shape, [m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(2, 32) []", out


def test_static_embedding_is_the_mean_of_token_vectors(static_run):
    _, bundle = static_run
    encoder = load(bundle)
    table = np.load(bundle / "embeddings.npy").astype(np.float32)
    ids = encoder.tokenizer.encode("the cat sat").ids
    expected = table[ids].mean(0)
    np.testing.assert_allclose(encoder.encode(["the cat sat"])[0], expected / np.linalg.norm(expected), atol=1e-6)


@pytest.mark.parametrize("variant, match", [
    ("{name: s, backend: onnxruntime, steps: [{step: static_embeddings}]}",
     "backend onnxruntime runs onnx models, but the steps end with a static model"),
    ("{name: s, backend: static, steps: [{step: int8_dynamic}]}",
     "backend static runs static models, but the steps end with a onnx model; add one of: static_embeddings"),
])
def test_static_step_and_backend_go_together(tmp_path, variant, match):
    from edgeslim.plan import plan_recipe

    text = STATIC_RECIPE.replace("{name: static, backend: static, steps: [{step: static_embeddings}]}", variant)
    recipe, _ = load_recipe(write_recipe(tmp_path, text))
    with pytest.raises(RecipeError, match=match):
        plan_recipe(recipe)
