"""DS-CNN: the depthwise-separable CNN of "Hello Edge" (Zhang et al., 2017), the canonical
keyword-spotting model on microcontrollers and the Arm Ethos-U: a strided conv over the log-mel
spectrogram, then blocks of depthwise 3x3 + pointwise 1x1 convs (batch norm, ReLU), all of one
width and stride 1, so any of them can be dropped. The last feature map is the output, one
position per time-frequency cell; mean pooling is the usual global average pool.

Input: (batch, 1, n_mels, frames) log-mel features, made by the runtime's audio front end
(`edgeslim.runtime.audio`) with the parameters in the folder's `preprocessor_config.json`.

A folder for `source: local` holds `config.json` ({"model_type": "ds_cnn", "n_mels", "frames",
"width", "blocks", "kernel", "stride"}), `model.safetensors` and `preprocessor_config.json`
(the front end: sample rate, window, FFT, hop, mel bands, normalisation).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeslim.errors import RecipeError
from edgeslim.models.base import InputSpec, Surgery
from edgeslim.models.cnn import CnnConfig, CnnFamily

FRONTEND_FILE = "preprocessor_config.json"


def _module_class():
    import torch
    from torch import nn

    def conv_bn_relu(inp, out, kernel, stride=(1, 1), groups=1):
        padding = tuple(k // 2 for k in kernel)
        return nn.Sequential(nn.Conv2d(inp, out, kernel, stride, padding, groups=groups, bias=False),
                             nn.BatchNorm2d(out), nn.ReLU(inplace=True))

    class DsBlock(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.depthwise = conv_bn_relu(width, width, (3, 3), groups=width)
            self.pointwise = conv_bn_relu(width, width, (1, 1))

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class DsCnn(nn.Module):
        def __init__(self, width: int, blocks: int, kernel, stride):
            super().__init__()
            self.stem = conv_bn_relu(1, width, tuple(kernel), tuple(stride))
            self.blocks = nn.Sequential(*[DsBlock(width) for _ in range(blocks)])
            self.out_channels = width

        def forward(self, input_features):
            x = self.blocks(self.stem(input_features))
            return x.flatten(2).transpose(1, 2)  # (batch, cells, channels)

    return DsCnn, torch


class DsCnnFamily(CnnFamily):
    name = "ds-cnn"
    modality = "audio"
    model_types = ("ds_cnn",)
    # Dropping blocks (`layers`: all keep the shape) and pruning conv channels (`ffn`).
    surgery = Surgery(frozenset({"layers", "ffn"}), {
        "heads": "a CNN has no attention heads",
        "vocabulary": "an audio model has no token vocabulary",
        "npu_body": "an audio model runs whole on the NPU: use litert_convert + litert_int8_full"})

    def tiny_config(self) -> CnnConfig:
        return CnnConfig(model_type="ds_cnn", n_mels=16, frames=15, width=8, blocks=2, kernel=[5, 5], stride=[2, 2])

    def build(self, config: CnnConfig):
        if config.get("model_type") != "ds_cnn":
            raise RecipeError(f"ds-cnn model_type {config.get('model_type')!r}; expected 'ds_cnn'")
        DsCnn, torch = _module_class()
        torch.manual_seed(0)
        try:
            module = DsCnn(int(config["width"]), int(config["blocks"]), config.get("kernel", [5, 5]),
                           config.get("stride", [2, 2]))
            int(config["n_mels"]), int(config["frames"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"ds-cnn config needs n_mels, frames, width and blocks as integers ({exc})") from None
        module.config = config
        return module.eval()

    def inputs(self, module) -> tuple[InputSpec, ...]:
        config = module.config
        return (InputSpec("input_features", "float32", ("batch", 1, int(config["n_mels"]), int(config["frames"]))),)

    def preprocessing(self, module, folder: Path | None) -> dict:
        """The audio front end: the folder's preprocessor_config.json, else the default one sized
        to the model's input (8 kHz, 256-point FFT every 128 samples)."""
        from edgeslim.runtime.audio import AudioFrontend

        config = module.config
        if folder is not None and (folder / FRONTEND_FILE).is_file():
            try:
                frontend = AudioFrontend.model_validate(json.loads((folder / FRONTEND_FILE).read_text(encoding="utf-8")))
            except ValueError as exc:
                raise RecipeError(f"{folder / FRONTEND_FILE}: not an audio front end: {exc}") from None
        else:
            n_fft, hop = 256, 128
            frontend = AudioFrontend(n_mels=int(config["n_mels"]), n_fft=n_fft, hop_length=hop,
                                     clip_samples=n_fft + hop * (int(config["frames"]) - 1))
        if (frontend.n_mels, frontend.frames) != (int(config["n_mels"]), int(config["frames"])):
            raise RecipeError(f"the front end makes {frontend.n_mels} x {frontend.frames} features; the model takes "
                              f"{config['n_mels']} x {config['frames']}")
        return frontend.model_dump()

    def save_preprocessing(self, preprocessing: dict, folder: Path) -> None:
        (Path(folder) / FRONTEND_FILE).write_text(json.dumps(preprocessing, indent=2), encoding="utf-8")

    def hidden_states(self, module, input_features):
        return module(input_features)

    def blocks(self, module):
        return module.blocks

    def keep_blocks(self, module, indices: tuple[int, ...]) -> None:
        from torch import nn

        module.blocks = nn.Sequential(*[module.blocks[i] for i in indices])
        module.config = CnnConfig({**module.config, "blocks": len(indices)})

    def embedding_convs(self, module) -> list:
        """The convs whose output channels are the embedding: the last block's pointwise conv
        (the stem's when no block is left)."""
        last = module.blocks[-1].pointwise if len(module.blocks) else module.stem
        return [last[0]]


DS_CNN = DsCnnFamily()
