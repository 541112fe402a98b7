"""DS-CNN: the depthwise-separable CNN of "Hello Edge" (Zhang et al., 2017), the canonical
keyword-spotting model on microcontrollers and the Arm Ethos-U: a strided conv over the log-mel
spectrogram, then blocks of depthwise 3x3 + pointwise 1x1 convs (batch norm, ReLU), all of one
width. A block may stride 2 (`strides`): it halves the resolution and widens what each output
cell hears, and stays when blocks are dropped; the stride-1 blocks can be dropped freely. The last
feature map is the output, one position per time-frequency cell; mean pooling is the usual
global average pool.

Input: (batch, 1, n_mels, frames) log-mel features, made by the runtime's audio front end
(`edgeslim.runtime.audio`) with the parameters in the folder's `preprocessor_config.json`.

A folder for `source: local` holds `config.json` ({"model_type": "ds_cnn", "n_mels", "frames",
"width", "blocks", "strides", "kernel", "stride"}), `model.safetensors` and `preprocessor_config.json`
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
        def __init__(self, width, stride=1):
            super().__init__()
            self.stride = stride
            self.depthwise = conv_bn_relu(width, width, (3, 3), (stride, stride), groups=width)
            self.pointwise = conv_bn_relu(width, width, (1, 1))

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class DsCnn(nn.Module):
        def __init__(self, width: int, strides, kernel, stride, input_shape, embedding: int | None = None):
            super().__init__()
            self.stem = conv_bn_relu(1, width, tuple(kernel), tuple(stride))
            self.blocks = nn.Sequential(*[DsBlock(width, s) for s in strides])
            self.head = None
            if embedding:  # a linear map of the whole last feature map: keeps where in time a sound was
                with torch.no_grad():
                    cells = self.blocks(self.stem(torch.zeros(1, 1, *input_shape))).numel()
                self.head = nn.Linear(cells, int(embedding))
            self.out_channels = int(embedding) if embedding else width

        def forward(self, input_features):
            x = self.blocks(self.stem(input_features))
            if self.head is not None:
                return self.head(x.flatten(1)).unsqueeze(1)  # (batch, 1, embedding)
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
            strides = [int(s) for s in config.get("strides", [1] * int(config["blocks"]))]
            if len(strides) != int(config["blocks"]) or not set(strides) <= {1, 2}:
                raise ValueError(f"strides {strides} must give 1 or 2 for each of the {config['blocks']} blocks")
            module = DsCnn(int(config["width"]), strides, config.get("kernel", [5, 5]), config.get("stride", [2, 2]),
                           (int(config["n_mels"]), int(config["frames"])), config.get("embedding"))
            int(config["n_mels"]), int(config["frames"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"ds-cnn config needs n_mels, frames, width and blocks as integers, strides of 1 or 2 "
                              f"({exc})") from None
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
        """Keep the blocks `indices`; a strided block changes the resolution, so it must stay."""
        from torch import nn

        strided = self.fewest_blocks(module)
        missing = [i for i in strided if i not in indices and module.blocks[i].stride != 1]
        if missing:
            raise RecipeError(f"keep_layers must keep blocks {missing} (they stride 2: they change the resolution); "
                              f"the strided blocks are {list(strided)}")
        kept = [module.blocks[i] for i in sorted(set(indices))]
        module.blocks = nn.Sequential(*kept)
        module.config = CnnConfig({**module.config, "blocks": len(kept), "strides": [b.stride for b in kept]})

    def fewest_blocks(self, module) -> tuple[int, ...]:
        """The strided blocks (they must stay), or the first when none strides."""
        strided = tuple(i for i, block in enumerate(module.blocks) if block.stride != 1)
        return strided or (0,)

    def embedding_convs(self, module) -> list:
        """The convs whose output channels are the embedding: the last block's pointwise conv
        (the stem's when no block is left)."""
        last = module.blocks[-1].pointwise if len(module.blocks) else module.stem
        return [last[0]]


DS_CNN = DsCnnFamily()
