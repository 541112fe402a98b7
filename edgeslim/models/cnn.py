"""Convolutional image encoders with torchvision's architectures and parameter names (ResNet
18/34/50, MobileNetV2), so a torchvision state dict saved as safetensors loads strictly.

Written here rather than imported: the torchvision wheels on PyPI are CUDA builds that fail to
import beside the CPU torch this kit pins ("operator torchvision::nms does not exist"). The
classifier head is dropped; the last feature map is the output, one position per cell, so mean
pooling is torchvision's global average pool.

A folder for `source: local` holds `config.json` ({"model_type": "resnet18" | ... , "image_size":
224}), `model.safetensors` (torchvision's state dict; fc.* / classifier.* are ignored) and
optionally `preprocessor_config.json` (else ImageNet's: resize 256, center-crop 224, bilinear).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeslim.errors import RecipeError
from edgeslim.models._hf_image import image_inputs, preprocessing_from_hf, write_hf_preprocessing
from edgeslim.models.base import InputSpec, ModelFamily, Surgery

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# torchvision's ResNet layouts: block kind and blocks per stage.
RESNETS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3))}
# "cifar": a 3x3 stride-1 first conv and no max pool, the usual ResNet for 32x32 images.
STEMS = ("imagenet", "cifar")


def _modules():
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self, kind: str, layers, width: int = 64, stem: str = "imagenet"):
            super().__init__()
            block = BasicBlock if kind == "basic" else Bottleneck
            self.inplanes = width
            if stem == "cifar":  # 32x32 inputs: a 3x3 stride-1 stem and no max pool keep the resolution
                self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
                self.maxpool = nn.Identity()
            else:
                self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
                setattr(self, f"layer{i + 1}", self._stage(block, width * 2 ** i, blocks, stride))
            self.out_channels = width * 8 * block.expansion

        def _stage(self, block, planes, blocks, stride):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * block.expansion))
            stage = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*stage)

        def forward(self, pixel_values):
            x = self.maxpool(self.relu(self.bn1(self.conv1(pixel_values))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return x.flatten(2).transpose(1, 2)  # (batch, cells, channels)

    def conv_bn_act(inp, oup, kernel=3, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, expand_ratio):
            super().__init__()
            hidden = int(round(inp * expand_ratio))
            self.use_res_connect = stride == 1 and inp == oup
            layers = [conv_bn_act(inp, hidden, kernel=1)] if expand_ratio != 1 else []
            layers += [conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
                       nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1))

        def __init__(self, width_mult: float = 1.0):
            super().__init__()

            def divisible(v):  # torchvision's _make_divisible(v, 8)
                new = max(8, int(v + 4) // 8 * 8)
                return new + 8 if new < 0.9 * v else new

            inp, last = divisible(32 * width_mult), divisible(1280 * max(1.0, width_mult))
            features = [conv_bn_act(3, inp, stride=2)]
            for t, c, n, s in self.SETTINGS:
                out = divisible(c * width_mult)
                for i in range(n):
                    features.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                    inp = out
            features.append(conv_bn_act(inp, last, kernel=1))
            self.features = nn.Sequential(*features)
            self.out_channels = last

        def forward(self, pixel_values):
            return self.features(pixel_values).flatten(2).transpose(1, 2)

    return ResNet, MobileNetV2, torch


class CnnConfig(dict):
    """The small config a CNN folder carries (a dict with attribute access for the pipeline)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def to_dict(self) -> dict:
        return dict(self)


class CnnFamily(ModelFamily):
    """Base of the torchvision-shaped CNNs. Pooling: mean (= global average pool)."""

    modality = "image"
    poolings = ("mean",)
    transformer = False
    surgery = Surgery(frozenset({"ffn"}), {
        "layers": "dropping the inverted-residual blocks of a MobileNet is not written yet (distil into a smaller "
                  "width_mult instead)",
        "heads": "a CNN has no attention heads",
        "vocabulary": "an image model has no token vocabulary",
        "npu_body": "the integer NPU body is built for BERT's block layout only"})

    def build(self, config: CnnConfig):
        raise NotImplementedError

    def tiny_random(self, max_seq_length: int):
        module = self.build(self.tiny_config())
        return module, None

    def from_folder(self, folder: Path):
        from safetensors.torch import load_file

        try:
            config = CnnConfig(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise RecipeError(f"{folder}/config.json: {exc}") from None
        module = self.build(config)
        state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
                 if not k.startswith(("fc.", "classifier."))}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RecipeError(f"{folder}/model.safetensors does not hold a torchvision {config['model_type']} "
                              f"state dict (missing {missing[:5]}, unexpected {unexpected[:5]})")
        return module.eval()

    def save(self, module, folder) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(dict(module.config), indent=2), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(folder / "model.safetensors"))

    def inputs(self, module) -> tuple[InputSpec, ...]:
        size = int(module.config["image_size"])
        return image_inputs(size, size)

    def save_preprocessing(self, preprocessing: dict, folder: Path) -> None:
        write_hf_preprocessing(preprocessing, folder)

    def image_size(self, module) -> int:
        return int(module.config["image_size"])

    def hidden_size(self, module) -> int:
        return int(module.out_channels)

    def preprocessing(self, module, folder: Path | None) -> dict:
        size = self.image_size(module)
        if folder is not None and (folder / "preprocessor_config.json").is_file():
            return preprocessing_from_hf(folder, size)
        if size >= 224:  # torchvision's ImageNet evaluation transform
            return {"resize_shortest_edge": round(size * 256 / 224), "crop": [size, size], "interpolation": "bilinear",
                    "rescale": 1 / 255, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        return {"resize": [size, size], "interpolation": "bilinear", "rescale": 1 / 255, "mean": IMAGENET_MEAN,
                "std": IMAGENET_STD}

    def hidden_states(self, module, pixel_values):
        return module(pixel_values)

    def exportable(self, module):
        import copy

        return copy.deepcopy(module).eval()

    def example(self, module):
        """One all-zero input of the model's shape (batch 1), for shape traces."""
        _, _, torch = _modules()
        (spec,) = self.inputs(module)
        return torch.zeros(1, *spec.shape[1:])

    def blocks(self, module):
        raise NotImplementedError

    def embedding_convs(self, module) -> list:
        """The convs whose output channels are the embedding: pruning leaves their outputs whole."""
        raise NotImplementedError

    def prune_channels(self, module, ratio: float) -> None:
        """Remove `ratio` of the conv channels, in place: torch-pruning's dependency graph keeps
        the coupled convs, batch norms and residual adds consistent; importance is the L2 norm
        of each coupled group; the embedding's channels stay."""
        import torch
        import torch_pruning as tp

        pruner = tp.pruner.MetaPruner(module, self.example(module),
                                      importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
                                      ignored_layers=self.embedding_convs(module))
        with torch.no_grad():
            pruner.step()

    def channel_shapes(self, module) -> list[int]:
        _, _, torch = _modules()
        return [m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d)]

    def macs(self, module, positions: int, batch: int = 1) -> float:
        """Conv MACs from a shape trace at the model's input size (positions does not apply)."""
        _, _, torch = _modules()
        total = 0

        def count(conv, _inputs, output):
            nonlocal total
            total += output.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]

        hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.inference_mode():
            module(self.example(module))
        for hook in hooks:
            hook.remove()
        return float(total * batch)


class ResNetFamily(CnnFamily):
    name = "resnet"
    model_types = tuple(RESNETS)
    # Conv-channel pruning (`ffn`) and dropping residual blocks (`layers`, the first of each stage stays).
    surgery = Surgery(frozenset({"ffn", "layers"}), {
        "heads": "a CNN has no attention heads",
        "vocabulary": "an image model has no token vocabulary",
        "npu_body": "an image model runs whole on the NPU: use litert_convert + litert_int8_full"})

    def _stages(self, module) -> list:
        return [module.layer1, module.layer2, module.layer3, module.layer4]

    def blocks(self, module):
        """Every residual block, stage by stage: `keep_layers` indexes this list."""
        return [block for stage in self._stages(module) for block in stage]

    def keep_blocks(self, module, indices: tuple[int, ...]) -> None:
        """Keep the blocks `indices` (of `blocks()`); each stage's first block changes the shape
        (stride, channels), so it must stay."""
        from torch import nn

        keep, start, depths = set(indices), 0, []
        for number, stage in enumerate(self._stages(module), 1):
            if start not in keep:
                raise RecipeError(f"keep_layers must keep block {start} (the first of stage layer{number}: it "
                                  f"changes the resolution or width); the first blocks are "
                                  f"{self.first_blocks(module)}")
            kept = [block for i, block in enumerate(stage, start) if i in keep]
            setattr(module, f"layer{number}", nn.Sequential(*kept))
            depths.append(len(kept))
            start += len(stage)
        module.config = CnnConfig({**module.config, "layers": depths})

    def fewest_blocks(self, module) -> tuple[int, ...]:
        return tuple(self.first_blocks(module))

    def first_blocks(self, module) -> list[int]:
        starts, start = [], 0
        for stage in self._stages(module):
            starts.append(start)
            start += len(stage)
        return starts

    def tiny_config(self) -> CnnConfig:
        return CnnConfig(model_type="resnet18", image_size=32, width=8, stem="cifar")

    def embedding_convs(self, module) -> list:
        bottleneck = RESNETS[module.config["model_type"]][0] == "bottleneck"
        last = [block.conv3 if bottleneck else block.conv2 for block in module.layer4]
        return last + [module.layer4[0].downsample[0]]

    def build(self, config: CnnConfig):
        if config.get("model_type") not in RESNETS:
            raise RecipeError(f"resnet model_type {config.get('model_type')!r}; supported: {', '.join(RESNETS)}")
        ResNet, _, torch = _modules()
        torch.manual_seed(0)
        kind, layers = RESNETS[config["model_type"]]
        layers = tuple(int(n) for n in config.get("layers", layers))
        stem = config.get("stem", "imagenet")
        if len(layers) != 4 or min(layers) < 1 or stem not in STEMS:
            raise RecipeError(f"resnet config: layers must be 4 stage depths >= 1 (got {list(layers)}) and stem one "
                              f"of {', '.join(STEMS)} (got {stem!r})")
        module = ResNet(kind, layers, width=int(config.get("width", 64)), stem=stem)
        module.config = config
        return module.eval()


class MobileNetV2Family(CnnFamily):
    name = "mobilenet_v2"
    model_types = ("mobilenet_v2",)

    def tiny_config(self) -> CnnConfig:
        return CnnConfig(model_type="mobilenet_v2", image_size=32, width_mult=0.25)

    def embedding_convs(self, module) -> list:
        return [module.features[-1][0]]  # the 1x1 conv to the last width (1280)

    def build(self, config: CnnConfig):
        _, MobileNetV2, torch = _modules()
        torch.manual_seed(0)
        module = MobileNetV2(float(config.get("width_mult", 1.0)))
        module.config = config
        return module.eval()


RESNET = ResNetFamily()
MOBILENET_V2 = MobileNetV2Family()
