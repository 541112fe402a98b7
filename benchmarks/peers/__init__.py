"""Peers side by side: sentence-transformers' own int8 exports of the teacher (ONNX Runtime
dynamic, OpenVINO static), Model2Vec distilled from it, PyTorch fp32 and edgeslim's bundles,
timed alternately in one process on the same inputs and threads, scored on the same data.

    edgeslim peers --bundles RUN/bundles/ov-int8 ... --out benchmarks/results/peers/HOST

See benchmarks/peers/README.md. The peers' exports run in their own venv (requirements.lock
beside this file); timing and scoring run here, with the same ONNX Runtime and OpenVINO. The
command itself (evaluation data, scoring, writing the table) is `edgeslim.peers`.
"""

from edgeslim.benchmarks.peers.side_by_side import Contender, render_markdown, tabulate, time_rounds

__all__ = ["Contender", "render_markdown", "tabulate", "time_rounds"]
