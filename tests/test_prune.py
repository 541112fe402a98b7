import numpy as np
import pytest
import torch

from edgeslim.compress.configs import DistillConfig, PruneConfig
from edgeslim.compress.export import export_onnx
from edgeslim.compress.prune import layer_shapes, load_pruned, prune_model, save_pruned
from edgeslim.errors import StepError


def test_heads_and_ffn_are_pruned_per_layer_and_hidden_size_is_kept(tiny_model):
    pruned, record = prune_model(tiny_model, PruneConfig(heads=(0.5, 0.25), ffn=0.5, heal=None))
    assert record["layers_before"] == [{"heads": 4, "ffn": 64}] * 2
    assert record["layers_after"] == [{"heads": 2, "ffn": 32}, {"heads": 3, "ffn": 32}]
    assert record["parameters_after"] < record["parameters_before"]
    assert pruned.module.encoder.layer[0].attention.self.attention_head_size == 8  # whole heads go
    vectors = pruned.embed(["a short sentence", "another one"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert layer_shapes(tiny_model) == [{"heads": 4, "ffn": 64}] * 2  # the teacher is untouched


def test_pruned_model_round_trips_without_the_hf_config(tiny_model, tmp_path):
    pruned, _ = prune_model(tiny_model, PruneConfig(heads=0.5, ffn=(0.25, 0.75), heal=None))
    save_pruned(pruned, tmp_path / "pruned.pt")
    family, reloaded = load_pruned(tmp_path / "pruned.pt")
    assert family is tiny_model.family
    assert layer_shapes(pruned.replace(module=reloaded)) == layer_shapes(pruned)
    ids, mask = tiny_model.tokenize(["the round trip must be exact", "yes"])
    feeds = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(**feeds).last_hidden_state, pruned.module(**feeds).last_hidden_state,
                                   rtol=0, atol=0)


def test_pruned_model_exports_to_onnx_with_parity(tiny_model, tmp_path):
    pruned, _ = prune_model(tiny_model, PruneConfig(heads=0.5, ffn=0.5, heal=None))
    _, record = export_onnx(pruned, tmp_path / "pruned.onnx", ["one sentence here", "and two", "three"])
    assert record["parity_max_abs_diff"] < 1e-5


def test_wrong_number_of_layer_ratios_is_a_step_error(tiny_model):
    with pytest.raises(StepError, match="lists 3 ratios; the model has 2 layers"):
        prune_model(tiny_model, PruneConfig(heads=(0.5, 0.5, 0.5)))


def test_ratio_out_of_range_is_rejected():
    with pytest.raises(Exception, match="less than or equal to 0.9"):
        PruneConfig(ffn=0.95)


def test_healing_distillation_recovers_what_pruning_lost(tiny_model, tmp_path):
    import copy

    from edgeslim.calibration_data import load_corpus
    from edgeslim.compress.distill import distill

    teacher = copy.deepcopy(tiny_model)  # scaled so that its layers matter (see test_distill)
    with torch.no_grad():
        for name, param in teacher.module.encoder.named_parameters():
            if name.endswith("weight") and "LayerNorm" not in name:
                param.mul_(8)
    teacher.weights_sha256 = "tiny-x8-for-prune"
    texts = list(load_corpus("wordnet-calibration").texts[:256])
    held_out = list(load_corpus("wordnet-heldout").texts[:64])
    pruned, _ = prune_model(teacher, PruneConfig(heads=0.5, ffn=0.75, heal=None))
    healed, record = distill(teacher, DistillConfig(epochs=4, batch_size=16, learning_rate=1e-3), texts, tmp_path,
                             log=lambda _: None, progress=False, student=pruned)
    target = teacher.embed(held_out)
    before = float((pruned.embed(held_out) * target).sum(1).mean())
    after = float((healed.embed(held_out) * target).sum(1).mean())
    assert layer_shapes(healed) == layer_shapes(pruned)  # healing keeps the pruned shapes
    assert after > before + 0.02, (before, after)
