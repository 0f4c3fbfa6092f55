"""Baseline for bench/ssl_step.py: the SimCLR training step in PyTorch, ResNet-18 at 64 px, written here.

The model is the torchvision ResNet-18 layout (conv 7x7/2 + BN + ReLU + max-pool 3x3/2, four stages of two basic blocks,
widths 64-512, stride 2 and a 1x1 conv + BN projection in the first block of stages 2-4, global average pool), the
head Linear(512, 2048) -> BatchNorm1d -> ReLU -> Linear(2048, 128), NT-Xent (t = 0.1, the mean over the 2N anchors)
on the two views concatenated in one forward pass, SGD with momentum 0.9: the same model, loss and optimizer as
goaldriven's step in bench/ssl_step.py. Data: one fixed random batch, outside the timed region.

Usage: python bench/torch_ssl_reference.py --batch 256 --steps 5 [--bf16]   (prints one JSON line)
"""

import argparse
import json
import os
import time

import torch
from torch import nn


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = None
        if stride != 1 or cin != cout:
            self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.project is None else self.project(x)))


class SimCLRNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        blocks, cin = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            for j in range(2):
                blocks.append(Basic(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Linear(512, 2048), nn.BatchNorm1d(2048), nn.ReLU(), nn.Linear(2048, 128))

    def forward(self, x):
        h = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.head(h)


def nt_xent(z, temperature=0.1):
    z = nn.functional.normalize(z, dim=1)
    n = z.shape[0] // 2
    sims = z @ z.t() / temperature
    sims.fill_diagonal_(-1e9)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return nn.functional.cross_entropy(sims, targets)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    model = SimCLRNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    views = torch.randn(2 * args.batch, 3, args.size, args.size)

    def step():
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = nt_xent(model(views).float())
        loss.backward()
        optimizer.step()
        return float(loss)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    times.sort()
    print(json.dumps({
        "torch_version": torch.__version__, "threads": torch.get_num_threads(), "bf16_autocast": args.bf16,
        "batch_images": args.batch, "views": 2 * args.batch, "image_size": args.size,
        "step_seconds_median": times[len(times) // 2], "step_seconds": times,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
