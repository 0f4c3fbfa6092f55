"""PyTorch versions of the mouse-vision release architectures, written for the tests from the reference's layer
description (neuroailab/mouse-vision `parallel_stream_mousenet.py`, `alexnet.py`, `necks.py`; spec ch3 A3.1-A3.2):
their `state_dict()` keys are the released files' keys, and their forward passes are the outputs the imported Keras
models must reproduce. Needs torch (the bench extra); imported only by tests that importorskip it."""

import torch
from torch import nn

STREAMS = {1: ["ventral"], 2: ["ventral", "dorsal"], 6: ["VISl", "VISrl", "VISal", "VISli", "VISpm", "VISpl"]}


def _conv_bn(cin, cout, k, s=1, p=0):
    return [nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p), nn.BatchNorm2d(cout), nn.ReLU()]


class StreamNet(nn.Module):
    """The BN StreamNet (visp_3x3): connections in the reference's order, summed into their targets."""

    def __init__(self, streams: int, classes: int | None = None):
        super().__init__()
        names = STREAMS[streams]
        self.outputs = ["VISpor"] if streams == 1 else ["VISpor", "VISam"]
        conns = ["input_VISp"] + [f"VISp_{s}" for s in names] + ["VISp_VISpor"]
        conns += [] if streams == 1 else ["VISp_VISam"]
        for s in names:
            conns += [f"{s}_VISpor"] if streams == 1 else [f"{s}_VISam", f"{s}_VISpor"]
        self.conns = conns
        layers = {}
        for conn in conns:
            if conn == "input_VISp":
                layers[conn] = nn.Sequential(*_conv_bn(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2))
            elif conn in ("VISp_VISpor", "VISp_VISam"):
                layers[conn] = nn.Sequential(*_conv_bn(64, 256, 3, 2, 0))
            elif conn.endswith(("_VISpor", "_VISam")):
                layers[conn] = nn.Sequential(*_conv_bn(384, 256, 3, 1, 1))
            else:
                layers[conn] = nn.Sequential(
                    *_conv_bn(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2), *_conv_bn(192, 384, 3, 1, 1)
                )
        self.model_layers = nn.ModuleDict(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        head = [nn.Flatten(1)]
        if classes:
            head += [nn.Dropout(), nn.Linear(len(self.outputs) * 256 * 36, classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        areas = {"input": x}
        for conn in self.conns:
            source, target = conn.split("_")
            out = self.model_layers[conn](areas[source])
            areas[target] = out if target not in areas else areas[target] + out
        pooled = self.avgpool(torch.cat([areas[a] for a in self.outputs], dim=1))
        return self.classifier(pooled), areas


class AlexNetBN(nn.Module):
    """torchvision's AlexNet with BN after every conv and the two hidden Linear layers (drop_final_fc: no fc8)."""

    def __init__(self, classes: int | None = None):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2), *_conv_bn(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2),
            *_conv_bn(192, 384, 3, 1, 1), *_conv_bn(384, 256, 3, 1, 1), *_conv_bn(256, 256, 3, 1, 1),
            nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        head = [nn.Dropout(), nn.Linear(9216, 4096), nn.BatchNorm1d(4096), nn.ReLU(), nn.Dropout(),
                nn.Linear(4096, 4096), nn.BatchNorm1d(4096), nn.ReLU()]  # fmt: skip
        if classes:
            head.append(nn.Linear(4096, classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1)), {}


class SimCLRNeck(nn.Module):
    """fc0 (no bias) -> bn0 -> ReLU -> fc1 (no bias) -> bn1."""

    def __init__(self, width: int, hidden: int = 2048, out: int = 128):
        super().__init__()
        self.fc0, self.bn0 = nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden)
        self.fc1, self.bn1 = nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out)

    def forward(self, x):
        return self.bn1(self.fc1(torch.relu(self.bn0(self.fc0(x)))))


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random values for every parameter and BN statistic (not the init: every element must matter)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if value.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif name.endswith(("weight", "bias", "running_mean")):
                scale = 1.0 if value.ndim == 1 else (value[0].numel()) ** -0.5
                value.copy_(torch.randn(value.shape, generator=generator) * scale)
    return module.eval()
