"""A network that reuses one convolution module: ``shared`` is applied ``steps`` times in a loop
(weight sharing across depth, as in recurrent or looped networks) and is also registered under a
second name (``alias``). nasconv makes it one slot: the chosen operator replaces it at every call
and under both names (or, with ``shared="refuse"``, refuses the model in one line)."""

from __future__ import annotations

import torch
from torch import nn


class LoopNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, steps: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.shared = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.alias = self.shared
        self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(steps))
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for norm in self.norms:
            x = x + torch.relu(norm(self.shared(x)))
        x = torch.relu(self.down(x))
        return self.fc(x.mean((2, 3)))


def loop_net(num_classes: int = 10, width: int = 32, steps: int = 3) -> LoopNet:
    return LoopNet(num_classes, width, steps)
