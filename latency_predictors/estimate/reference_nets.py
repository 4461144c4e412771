"""Published reference networks, built from their published definitions, for anchoring the
analytical device models on published latencies (:mod:`latency_predictors.estimate.anchors`).

Every net is data (a list of block settings) plus one small builder per block family, so the
analytical model costs it exactly like a table row:
:func:`latency_predictors.estimate.anchors.reference_costs` exports it to ONNX and costs every
node (:func:`latency_predictors.estimate.roofline.graph_costs`). :data:`PUBLISHED_MACS` holds
the multiply-accumulates the authors report, checked by the tests against
:func:`search_spaces.stats.count_macs` of the built net.

Sources of the definitions:

- ``proxyless-cpu``, ``proxyless-gpu``, ``proxyless-mobile``: ProxylessNAS (Cai et al., ICLR
  2019), the authors' net configs (github.com/mit-han-lab/proxylessnas, ``proxyless_nas/
  model_zoo.py`` downloads them; the per-block kernel, expansion and width lists are also
  transcribed in osmr/imgclsmob ``pytorchcv/models/proxylessnas.py``, whose parameter counts
  4.36 M / 7.12 M / 4.08 M match the authors' logs ``logs/imagenet_*_log.txt``). MACs from
  those logs ("Total FLOPs: 439.2M / 465.3M / 320.4M", conv + linear multiply-adds).
- ``mobilenet-v2``: Sandler et al. 2018, Table 2 (300 M multiply-adds, Table 4).
- ``mnasnet-1.0``: torchvision's ``mnasnet1_0`` (MnasNet-B1 without squeeze-excitation, Tan et
  al. 2019), the net nn-Meter's anchors were predicted for.
- ``resnet-18``, ``resnet-50`` (v1.5: stride in the 3x3 conv, as NVIDIA's benchmarks),
  ``resnext-101-32x4d``, ``se-resnext-101-32x4d``: He et al. 2016 Table 1 (1.8 / 3.8 GFLOPs,
  counted as multiply-adds, for v1), Xie et al. 2017 Table 5 (7.8 GFLOPs), Hu et al. 2018.
- ``efficientnet-b0`` (224 px), ``efficientnet-b4`` (380 px): Tan & Le 2019, Table 1 and
  the compound scaling (width 1.4, depth 1.8 for B4); Table 2: 0.39 B and 4.2 B FLOPs.
- ``shufflenet-v2-1.0``: Ma et al. 2018, Table 5 (146 M FLOPs, counted as multiply-adds).
- ``googlenet``: torchvision's GoogLeNet (Szegedy et al. 2015, Table 1, with batch norm and a
  3x3 conv in the "5x5" branch, as torchvision builds it).
- ``squeezenet-1.0``: Iandola et al. 2016, Table 1; ``alexnet``: torchvision's single-tower
  variant (the one nn-Meter predicted).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from hwnas_common.errors import HwnasError

# net -> (published MACs in millions, where); see the module docstring
PUBLISHED_MACS: dict[str, tuple[float, str]] = {
    "proxyless-cpu": (439.2, "mit-han-lab/proxylessnas logs/imagenet_cpu_log.txt"),
    "proxyless-gpu": (465.3, "mit-han-lab/proxylessnas logs/imagenet_gpu_log.txt"),
    "proxyless-mobile": (320.4, "mit-han-lab/proxylessnas logs/imagenet_mobile_log.txt"),
    "mobilenet-v2": (300.0, "Sandler et al. 2018, Table 4"),
    "resnet-18": (1800.0, "He et al. 2016, Table 1"),
    "resnext-101-32x4d": (7800.0, "Xie et al. 2017, Table 5"),
    "shufflenet-v2-1.0": (146.0, "Ma et al. 2018, Table 5"),
    "googlenet": (1500.0, "Szegedy et al. 2015, section 1 (1.5 billion multiply-adds)"),
    "efficientnet-b0": (390.0, "Tan & Le 2019, Table 2"),
    "efficientnet-b4": (4200.0, "Tan & Le 2019, Table 2"),
}

# ProxylessNAS stages after the stem: (width, kernel, expansion) per block; None = the block is
# a zero layer (skipped). First block of a stage has stride 2 and no residual.
_PROXYLESS: dict[str, dict] = {
    "cpu": {"stem": 40, "first": 24, "last": 1432, "stages": [
        [(32, 3, 6), (32, 3, 3), (32, 3, 3), (32, 3, 3)],
        [(48, 3, 6), (48, 3, 3), (48, 3, 3), (48, 5, 3)],
        [(88, 3, 6), None, None, (88, 3, 3), (104, 5, 6), (104, 3, 3), (104, 3, 3), (104, 3, 3)],
        [(216, 5, 6), (216, 5, 3), (216, 5, 3), (216, 3, 3), (360, 5, 6)]]},
    "gpu": {"stem": 40, "first": 24, "last": 1728, "stages": [
        [(32, 5, 3), None, None, None],
        [(56, 7, 3), None, None, (56, 3, 3)],
        [(112, 7, 6), None, None, (112, 5, 3), (128, 5, 6), None, (128, 3, 3), (128, 5, 3)],
        [(256, 7, 6), (256, 7, 6), (256, 7, 6), (256, 5, 6), (432, 7, 6)]]},
    "mobile": {"stem": 32, "first": 16, "last": 1280, "stages": [
        [(32, 5, 3), (32, 3, 3), None, None],
        [(40, 7, 3), (40, 3, 3), (40, 5, 3), (40, 5, 3)],
        [(80, 7, 6), (80, 5, 3), (80, 5, 3), (80, 5, 3), (96, 5, 6), (96, 5, 3), (96, 5, 3),
         (96, 5, 3)],
        [(192, 7, 6), (192, 7, 6), (192, 7, 3), (192, 7, 3), (320, 7, 6)]]},
}


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1,
             act: type[nn.Module] | None = nn.ReLU) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(c_out)]
    return layers + ([act()] if act else [])


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, reduced, 1),
                                  act(), nn.Conv2d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.body(x)


class _Residual(nn.Module):
    """``body(x) (+ x)``, with an optional projection ``short`` of the shortcut and an
    activation ``post`` after the sum (ResNet)."""

    def __init__(self, body: nn.Module, add: bool, short: nn.Module | None = None,
                 post: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.add, self.short, self.post = body, add, short, post

    def forward(self, x):
        y = self.body(x)
        if self.add:
            y = y + (self.short(x) if self.short is not None else x)
        return self.post(y) if self.post is not None else y


def _mbconv(c_in: int, c_out: int, k: int, stride: int, expand: int,
            act: type[nn.Module] = nn.ReLU6, se: float = 0.0) -> nn.Module:
    """Inverted residual (MobileNetV2 / MnasNet / ProxylessNAS / EfficientNet MBConv)."""
    hidden = c_in * expand
    layers = _conv_bn(c_in, hidden, 1, act=act) if expand != 1 else []
    layers += _conv_bn(hidden, hidden, k, stride, hidden, act=act)
    if se:
        layers.append(_SqueezeExcite(hidden, max(1, int(c_in * se)), act))
    layers += _conv_bn(hidden, c_out, 1, act=None)
    return _Residual(nn.Sequential(*layers), stride == 1 and c_in == c_out)


def _head(c_in: int, width: int, classes: int = 1000,
          act: type[nn.Module] = nn.ReLU6) -> list[nn.Module]:
    return _conv_bn(c_in, width, 1, act=act) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                nn.Linear(width, classes)]


def proxyless(which: str) -> nn.Module:
    """ProxylessNAS-CPU/-GPU/-Mobile (``which`` in cpu, gpu, mobile), 224x224."""
    cfg = _PROXYLESS[which]
    layers = _conv_bn(3, cfg["stem"], 3, 2, act=nn.ReLU6)
    layers.append(_mbconv(cfg["stem"], cfg["first"], 3, 1, 1))
    c_in = cfg["first"]
    for stage in cfg["stages"]:
        for i, block in enumerate(stage):
            if block is None:
                continue
            width, k, e = block
            # the first block of a stage downsamples; a width change inside a stage has
            # stride 1 and no residual (widths differ)
            layers.append(_mbconv(c_in, width, k, 2 if i == 0 else 1, e))
            c_in = width
    return nn.Sequential(*layers, *_head(c_in, cfg["last"])).eval()


def _mbconv_net(stem: int, stages: list[tuple[int, int, int, int, int]], last: int,
                act: type[nn.Module] = nn.ReLU6, se: float = 0.0,
                first_dw: int = 0) -> nn.Module:
    """Stem conv 3x3/2, optional depthwise-separable block to ``first_dw`` channels, then
    ``stages`` of (expansion, kernel, stride, width, repeats) inverted residuals."""
    layers = _conv_bn(3, stem, 3, 2, act=act)
    c_in = stem
    if first_dw:
        layers += _conv_bn(stem, stem, 3, 1, stem, act=act) + _conv_bn(stem, first_dw, 1,
                                                                      act=None)
        c_in = first_dw
    for e, k, s, width, n in stages:
        for i in range(n):
            layers.append(_mbconv(c_in, width, k, s if i == 0 else 1, e, act, se))
            c_in = width
    return nn.Sequential(*layers, *_head(c_in, last, act=act)).eval()


def mobilenet_v2() -> nn.Module:
    """MobileNetV2 1.0 (Sandler et al. 2018, Table 2), 224x224."""
    return _mbconv_net(32, [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 3, 2, 32, 3),
                            (6, 3, 2, 64, 4), (6, 3, 1, 96, 3), (6, 3, 2, 160, 3),
                            (6, 3, 1, 320, 1)], 1280)


def mnasnet_1_0() -> nn.Module:
    """torchvision's MNASNet 1.0 (MnasNet-B1, no squeeze-excitation), 224x224."""
    return _mbconv_net(32, [(3, 3, 2, 24, 3), (3, 5, 2, 40, 3), (6, 5, 2, 80, 3),
                            (6, 3, 1, 96, 2), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)], 1280,
                       nn.ReLU, first_dw=16)


def efficientnet(width: float, depth: float) -> nn.Module:
    """EfficientNet (Tan & Le 2019, Table 1) scaled by ``width`` and ``depth``: swish,
    squeeze-excitation at 1/4 of the block's input channels."""
    def filters(c: int) -> int:
        scaled = c * width
        rounded = max(8, int(scaled + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * scaled else rounded

    base = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
            (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    stages = [(e, k, s, filters(c), math.ceil(depth * n)) for e, k, s, c, n in base]
    return _mbconv_net(filters(32), stages, filters(1280), nn.SiLU, se=0.25)


def _bottleneck(c_in: int, width: int, c_out: int, stride: int, groups: int = 1,
                se: bool = False) -> nn.Module:
    layers = _conv_bn(c_in, width, 1) + _conv_bn(width, width, 3, stride, groups)
    layers += _conv_bn(width, c_out, 1, act=None)
    if se:
        layers.append(_SqueezeExcite(c_out, c_out // 16, nn.ReLU))
    short = (nn.Sequential(*_conv_bn(c_in, c_out, 1, stride, act=None))
             if stride != 1 or c_in != c_out else None)
    return _Residual(nn.Sequential(*layers), True, short, nn.ReLU())


def _basic(c_in: int, c_out: int, stride: int) -> nn.Module:
    layers = _conv_bn(c_in, c_out, 3, stride) + _conv_bn(c_out, c_out, 3, act=None)
    short = (nn.Sequential(*_conv_bn(c_in, c_out, 1, stride, act=None))
             if stride != 1 or c_in != c_out else None)
    return _Residual(nn.Sequential(*layers), True, short, nn.ReLU())


def resnet(depths: list[int], bottleneck: bool, groups: int = 1, group_width: int = 0,
           se: bool = False) -> nn.Module:
    """ResNet (basic or bottleneck blocks, v1.5 stride placement), ResNeXt (``groups`` x
    ``group_width``) and SE-ResNeXt, 224x224."""
    layers = _conv_bn(3, 64, 7, 2) + [nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for stage, n in enumerate(depths):
        planes = 64 * 2 ** stage
        for i in range(n):
            stride = 2 if i == 0 and stage > 0 else 1
            if bottleneck:
                width = groups * group_width * 2 ** stage if groups > 1 else planes
                layers.append(_bottleneck(c_in, width, planes * 4, stride, groups, se))
                c_in = planes * 4
            else:
                layers.append(_basic(c_in, planes, stride))
                c_in = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1000)]
    return nn.Sequential(*layers).eval()


class _ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits the channels in half and transforms one half; stride
    2 transforms both copies of the input; then concatenation and a 2-group channel shuffle."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        half = c_out // 2
        self.half = c_in // 2
        branch_in = c_in if stride == 2 else c_in // 2
        self.branch2 = nn.Sequential(*_conv_bn(branch_in, half, 1),
                                     *_conv_bn(half, half, 3, stride, half, act=None),
                                     *_conv_bn(half, half, 1))
        self.branch1 = (nn.Sequential(*_conv_bn(c_in, c_in, 3, 2, c_in, act=None),
                                      *_conv_bn(c_in, half, 1)) if stride == 2 else None)

    def forward(self, x):
        import torch

        if self.branch1 is None:
            a, b = x[:, :self.half], self.branch2(x[:, self.half:])
        else:
            a, b = self.branch1(x), self.branch2(x)
        return torch.stack((a, b), 2).flatten(1, 2)  # concatenation + 2-group shuffle


def shufflenet_v2_1_0() -> nn.Module:
    """ShuffleNetV2 1.0x (Ma et al. 2018, Table 5), 224x224."""
    layers = _conv_bn(3, 24, 3, 2) + [nn.MaxPool2d(3, 2, 1)]
    c_in = 24
    for width, repeats in ((116, 4), (232, 8), (464, 4)):
        for i in range(repeats):
            layers.append(_ShuffleUnit(c_in, width, 2 if i == 0 else 1))
            c_in = width
    layers += _conv_bn(c_in, 1024, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                          nn.Linear(1024, 1000)]
    return nn.Sequential(*layers).eval()


class _Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(c_in, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        import torch

        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


class _Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int,
                 pool: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(*_conv_bn(c_in, c1, 1)),
            nn.Sequential(*_conv_bn(c_in, c3r, 1), *_conv_bn(c3r, c3, 3)),
            nn.Sequential(*_conv_bn(c_in, c5r, 1), *_conv_bn(c5r, c5, 3)),
            nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), *_conv_bn(c_in, pool, 1))])

    def forward(self, x):
        import torch

        return torch.cat([branch(x) for branch in self.branches], 1)


# GoogLeNet inception modules (Szegedy et al. 2015, Table 1); "M" = max pooling 3x3/2
_GOOGLENET = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "M",
              (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
              (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
              (528, 256, 160, 320, 32, 128, 128), "M2", (832, 256, 160, 320, 32, 128, 128),
              (832, 384, 192, 384, 48, 128, 128)]


def googlenet() -> nn.Module:
    """torchvision's GoogLeNet without the auxiliary heads (inference), 224x224."""
    layers = _conv_bn(3, 64, 7, 2) + [nn.MaxPool2d(3, 2, ceil_mode=True)]
    layers += _conv_bn(64, 64, 1) + _conv_bn(64, 192, 3) + [nn.MaxPool2d(3, 2, ceil_mode=True)]
    for block in _GOOGLENET:
        if block == "M":
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        elif block == "M2":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            layers.append(_Inception(*block))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000)]
    return nn.Sequential(*layers).eval()


def squeezenet_1_0() -> nn.Module:
    """SqueezeNet 1.0 (Iandola et al. 2016, Table 1), 224x224."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, 2), nn.ReLU(), pool(), _Fire(96, 16, 64), _Fire(128, 16, 64),
        _Fire(128, 32, 128), pool(), _Fire(256, 32, 128), _Fire(256, 48, 192),
        _Fire(384, 48, 192), _Fire(384, 64, 256), pool(), _Fire(512, 64, 256),
        nn.Conv2d(512, 1000, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def alexnet() -> nn.Module:
    """AlexNet, torchvision's single-tower variant, 224x224."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Linear(256 * 36, 4096), nn.ReLU(),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)).eval()


# name -> (builder, input shape)
REFERENCE_NETS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "proxyless-cpu": (lambda: proxyless("cpu"), (3, 224, 224)),
    "proxyless-gpu": (lambda: proxyless("gpu"), (3, 224, 224)),
    "proxyless-mobile": (lambda: proxyless("mobile"), (3, 224, 224)),
    "mobilenet-v2": (mobilenet_v2, (3, 224, 224)),
    "mnasnet-1.0": (mnasnet_1_0, (3, 224, 224)),
    "resnet-18": (lambda: resnet([2, 2, 2, 2], False), (3, 224, 224)),
    "resnet-50": (lambda: resnet([3, 4, 6, 3], True), (3, 224, 224)),
    "resnext-101-32x4d": (lambda: resnet([3, 4, 23, 3], True, 32, 4), (3, 224, 224)),
    "se-resnext-101-32x4d": (lambda: resnet([3, 4, 23, 3], True, 32, 4, se=True),
                             (3, 224, 224)),
    "efficientnet-b0": (lambda: efficientnet(1.0, 1.0), (3, 224, 224)),
    "efficientnet-b4": (lambda: efficientnet(1.4, 1.8), (3, 380, 380)),
    "shufflenet-v2-1.0": (shufflenet_v2_1_0, (3, 224, 224)),
    "googlenet": (googlenet, (3, 224, 224)),
    "squeezenet-1.0": (squeezenet_1_0, (3, 224, 224)),
    "alexnet": (alexnet, (3, 224, 224)),
}


def build_reference(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """The reference net ``name`` (eval mode) and its input shape (C, H, W)."""
    if name not in REFERENCE_NETS:
        raise HwnasError(f"unknown reference net {name!r}; valid: {sorted(REFERENCE_NETS)}")
    builder, shape = REFERENCE_NETS[name]
    return builder(), shape
