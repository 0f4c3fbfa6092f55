"""Baseline for bench/streamnet_step.py: the StreamNet-dual training step in PyTorch, written here.

Reference: thesis Table 3.2, spec ch3 A3.1 (../shared/specs/ch3_ch4_mouse_mec.md). At 64 px:

    VISp    = MaxPool 3/2(ReLU(BN(Conv 11/4 p2 3 -> 64)))                                     64 -> 15 -> 7
    stream  = ReLU(BN(Conv 3 p1 192 -> 384))(MaxPool 3/2(ReLU(BN(Conv 5 p2 64 -> 192)(VISp))))  7 -> 3   (ventral, dorsal)
    area    = ReLU(BN(Conv 3/2 p0 64 -> 256)(VISp)) + sum_s ReLU(BN(Conv 3 p1 384 -> 256)(stream s))   (VISpor, VISam)
    pool    = flatten(AdaptiveAvgPool 6x6(concat(VISpor, VISam)))                              (b, 18432)
    logits  = Linear(18432 -> 1000)(Dropout 0.5(pool))

5,806,848 parameters without the classifier (thesis Table 3.4; asserted). Supervised step: cross-entropy, SGD
momentum 0.9, weight decay 5e-4 on the conv and linear weights (the library's TF1 L2 on kernels). SimCLR step: the
library's Chapter 3 head (tasks/self_supervised/simclr.py "chapter3": Linear 18432 -> 2048, BN, ReLU,
Linear 2048 -> 128; `--head output_bn` gives the variant without biases and with a final BN), NT-Xent (t = 0.1, mean
over the 2N anchors) on both views in one forward pass, and SGD momentum 0.9 (not LARS: the optimizer is not what is
timed; the TF side uses the same SGD). Data: one fixed random batch, outside the timed region.

Usage: python -m bench.torch_streamnet --kind supervised|simclr --images 128 --steps 5 [--bf16] [--channels-last]
(prints one JSON line; --images counts images through the network per step: SimCLR = images / 2 pairs)
"""

import argparse
import json
import os
import platform
import time

import torch
from torch import nn

PARAMS_WITHOUT_CLASSIFIER = 5_806_848  # thesis Table 3.4, StreamNet dual


def conv_bn_relu(cin, cout, kernel, stride, padding):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class StreamNet(nn.Module):
    """The StreamNet with `streams` intermediate streams and 1 (single) or 2 deep areas (module docstring)."""

    def __init__(self, streams: int = 2, num_classes: int = 1000, classifier: bool = True):
        super().__init__()
        self.visp = nn.Sequential(conv_bn_relu(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2))
        self.streams = nn.ModuleList(
            nn.Sequential(conv_bn_relu(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2), conv_bn_relu(192, 384, 3, 1, 1))
            for _ in range(streams)
        )
        deep = 1 if streams == 1 else 2
        self.skips = nn.ModuleList(conv_bn_relu(64, 256, 3, 2, 0) for _ in range(deep))
        self.deep = nn.ModuleList(
            nn.ModuleList(conv_bn_relu(384, 256, 3, 1, 1) for _ in range(streams)) for _ in range(deep)
        )
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.width = deep * 256 * 36
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(self.width, num_classes)) if classifier else None

    def features(self, x):
        visp = self.visp(x)
        streams = [stream(visp) for stream in self.streams]
        areas = []
        for skip, convs in zip(self.skips, self.deep):
            total = skip(visp)
            for conv, s in zip(convs, streams):
                total = total + conv(s)
            areas.append(total)
        return torch.flatten(self.pool(torch.cat(areas, dim=1)), 1)

    def forward(self, x):
        h = self.features(x)
        return self.classifier(h) if self.classifier is not None else h


def simclr_head(width: int, style: str = "chapter3") -> nn.Module:
    """The projection head: "chapter3" = the library's (biases, no output BN); "output_bn" = no biases, final BN."""
    if style == "chapter3":
        return nn.Sequential(nn.Linear(width, 2048), nn.BatchNorm1d(2048), nn.ReLU(inplace=True), nn.Linear(2048, 128))
    return nn.Sequential(
        nn.Linear(width, 2048, bias=False),
        nn.BatchNorm1d(2048),
        nn.ReLU(inplace=True),
        nn.Linear(2048, 128, bias=False),
        nn.BatchNorm1d(128),
    )


def nt_xent(z, temperature=0.1):
    """NT-Xent over 2N projections (the first N and the last N are the two views), mean over the 2N anchors."""
    z = nn.functional.normalize(z, dim=1)
    n = z.shape[0] // 2
    sims = z @ z.t() / temperature
    sims.fill_diagonal_(-1e9)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return nn.functional.cross_entropy(sims, targets)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(kind: str, head: str = "chapter3") -> nn.Module:
    """The network of one step kind ("supervised": StreamNet with classifier; "simclr": StreamNet + head)."""
    backbone = StreamNet(2, classifier=kind == "supervised")
    without = count_parameters(backbone) - (
        count_parameters(backbone.classifier) if backbone.classifier is not None else 0
    )
    assert without == PARAMS_WITHOUT_CLASSIFIER, f"StreamNet dual has {without} parameters, not 5,806,848"
    if kind == "supervised":
        return backbone
    return nn.Sequential(backbone, simclr_head(backbone.width, head))


def make_step(kind: str, images: int, size: int = 64, bf16: bool = False, channels_last: bool = False, head="chapter3"):
    """Returns (step(), model): one training step on a fixed random batch of `images` images."""
    torch.manual_seed(0)
    model = build(kind, head)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]  # conv and linear weights
    rest = [p for n, p in model.named_parameters() if p.dim() <= 1]
    wd = 5e-4 if kind == "supervised" else 1e-6
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}], lr=0.01, momentum=0.9
    )
    x = torch.randn(images, 3, size, size).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 1000, (images,))

    def loss_fn():
        out = model(x).float()
        if kind == "supervised":
            return nn.functional.cross_entropy(out, labels)
        return nt_xent(out)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    model.train()
    return step, model


def time_steps(step, steps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=["supervised", "simclr"], default="supervised")
    parser.add_argument("--images", type=int, default=128, help="images through the network per step")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="torch.autocast bfloat16")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (default: PyTorch's NCHW)")
    parser.add_argument("--head", choices=["chapter3", "output_bn"], default="chapter3")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    step, model = make_step(args.kind, args.images, args.size, args.bf16, args.channels_last, args.head)
    times = time_steps(step, args.steps, args.warmup)
    print(json.dumps({
        "torch_version": torch.__version__, "threads": torch.get_num_threads(), "kind": args.kind,
        "bf16_autocast": args.bf16, "channels_last": args.channels_last, "images": args.images,
        "image_size": args.size, "parameters": count_parameters(model), "processor": platform.processor(),
        "step_seconds_median": sorted(times)[len(times) // 2], "step_seconds": times,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
