"""The peers table (benchmarks/peers): ratio arithmetic, the best-peer rule, the Model2Vec
adapter against the library itself, and the command's refusals. The full table (the peers' own
venv, their exports, real timings) is the `peers` marker's test and benchmarks/results/peers/."""

import json

import numpy as np
import pytest

from edgeslim.benchmarks.peers import side_by_side as peers
from edgeslim.benchmarks.report import Accuracy
from edgeslim.cli import EXIT_INPUT, main


def _contender(name, kind, layers=6):
    return peers.Contender(name, kind, f"{name} for the test", [], None, None, "int8", layers=layers)


def _accuracy(stsb):
    return Accuracy(teacher_cosine_mean=0.99, teacher_cosine_min=0.9, eval_set="stsb-test", eval_sentences=10,
                    disjoint_from_calibration=True, overlap_with_calibration=0,
                    metrics=[{"name": "stsb_spearman", "label": "STS-B", "value": stsb}],
                    probes=[{"train": "banking77-train", "test": "banking77-test", "label": "intent", "train_items": 10,
                             "test_items": 10, "knn_k": 5, "knn_top1": 70.0, "linear_probe_top1": 80.0,
                             "test_disjoint_from_calibration": True}])


def test_ratios_are_medians_of_same_round_ratios_and_the_best_peer_is_at_teacher_accuracy():
    contenders = [_contender("PyTorch fp32", "baseline"), _contender("onnx peer", "peer"),
                  _contender("openvino peer", "peer"), _contender("model2vec", "peer", layers=0),
                  _contender("edgeslim student", "edgeslim", layers=3)]
    accuracy = {"PyTorch fp32": _accuracy(82.03), "onnx peer": _accuracy(81.7), "openvino peer": _accuracy(82.2),
                "model2vec": _accuracy(66.1), "edgeslim student": _accuracy(81.1)}
    # Per-round p50s: the host slows down by 2x in round 2, for every model alike.
    rounds = {"PyTorch fp32": [30.0, 60.0, 30.0], "onnx peer": [10.0, 20.0, 10.0], "openvino peer": [7.5, 15.0, 7.5],
              "model2vec": [0.1, 0.2, 0.1], "edgeslim student": [3.0, 6.0, 3.0]}
    point = peers.OPERATING_POINTS[0]["name"]
    timings = {point: {name: {"times": list(r) * 4, "round_p50": r} for name, r in rounds.items()}}
    rows = {row["name"]: row for row in peers.tabulate(contenders, accuracy, timings,
                                                       {"onnxruntime int8": 500.0, "onnxruntime fp32": 80.0})}
    student = rows["edgeslim student"]["latency"][point]
    # Model2Vec is faster but not at STS-B >= 81.0, so the best peer is the OpenVINO export.
    assert student["best_peer"] == "openvino peer"
    assert student["vs_pytorch"] == 10.0 and student["vs_best_peer"] == 2.5
    assert rows["model2vec"]["latency"][point]["vs_best_peer"] == 75.0
    assert rows["PyTorch fp32"]["latency"][point]["vs_pytorch"] == 1.0
    # The roofline: MACs of 3 layers at 128 tokens over the p50, against the int8 peak.
    macs = 3 * (128 * (4 * 384 * 384 + 2 * 384 * 1536) + 2 * 128 * 128 * 384)
    p50 = rows["edgeslim student"]["latency"][point]["p50"]
    assert rows["edgeslim student"]["roofline"]["gmacs"] == pytest.approx(macs / (p50 / 1e3) / 1e9, abs=0.1)
    assert rows["edgeslim student"]["roofline"]["peak_gmacs"] == 500.0
    assert rows["model2vec"]["roofline"]["gmacs"] is None  # no layers: nothing to hold against a GEMM


def test_the_model2vec_adapter_embeds_as_the_library_does(tiny_model, tmp_path):
    from model2vec import StaticModel

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((tiny_model.tokenizer.get_vocab_size(), 16)).astype(np.float32)
    StaticModel(vectors, tiny_model.tokenizer, normalize=False).save_pretrained(str(tmp_path / "m2v"))
    contender = peers.model2vec_peer(tmp_path / "m2v")
    texts = ["a short one", "a sentence that is a little longer than the first", "a short two", "x"]
    library = StaticModel.from_pretrained(str(tmp_path / "m2v")).encode(texts)
    library = library / np.linalg.norm(library, axis=1, keepdims=True)
    np.testing.assert_allclose(contender.embed(texts), library, rtol=1e-5, atol=1e-6)


def test_peers_command_refuses_a_folder_that_is_not_a_bundle_and_keeps_a_report(tmp_path, capsys):
    assert main(["peers", "--bundles", str(tmp_path), "--out", str(tmp_path / "out")]) == EXIT_INPUT
    assert "not a bundle folder" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text(json.dumps({"kept": True}))
    assert main(["peers", "--out", str(tmp_path / "out")]) == EXIT_INPUT
    assert "--force" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == {"kept": True}
    assert main(["peers", "--out", str(tmp_path / "new"), "--threads", "999"]) == EXIT_INPUT
    assert "allows 1.." in capsys.readouterr().err


def test_peers_command_without_the_shared_data_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path / "no-data"))
    assert main(["peers", "--out", str(tmp_path / "out")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "DataError" in err and "EDGESLIM_DATA" in err
    assert not (tmp_path / "out").exists()  # nothing written
