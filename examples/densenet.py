"""A DenseNet-style network (Huang et al., CVPR 2017): in each dense block every layer's 3 x 3
convolution reads the concatenation of all earlier feature maps (input channels growing by the
growth rate), and a 1 x 1 transition (fixed: pointwise) halves the channels between blocks."""

from __future__ import annotations

import torch
from torch import nn


class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)


class DenseNetSmall(nn.Module):
    def __init__(self, num_classes: int = 10, growth: int = 12, layers: int = 4) -> None:
        super().__init__()
        c = 2 * growth
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for b in range(2):
            for _ in range(layers):
                stages.append(DenseLayer(c, growth))
                c += growth
            if b == 0:
                stages += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.features(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def densenet_small(num_classes: int = 10, growth: int = 12, layers: int = 4) -> DenseNetSmall:
    return DenseNetSmall(num_classes, growth, layers)
