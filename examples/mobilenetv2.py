"""A MobileNetV2-style network for CIFAR: inverted residual blocks (1 x 1 expand, 3 x 3
depthwise, 1 x 1 project) after a fused first stage of dense 3 x 3 convolutions (as in
EfficientNetV2's fused-MBConv). Only the dense 3 x 3 convolutions are slots: the depthwise and
pointwise ones stay fixed, and the space file lists each with the reason.
"""

from __future__ import annotations

from torch import nn


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.use_res = stride == 1 and c_in == c_out
        self.expand = conv_bn(c_in, mid, 1)
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid)
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_res else y


class MobileNetV2Cifar(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()

        def w(c: int) -> int:
            return max(8, int(c * width) // 8 * 8)

        self.stem = conv_bn(3, w(32), 3)
        self.fused = nn.Sequential(conv_bn(w(32), w(16), 3), conv_bn(w(16), w(24), 3, 2))
        blocks, c = [], w(24)
        for c_out, n, stride in ((24, 1, 1), (32, 2, 2), (64, 2, 2), (96, 1, 1)):
            for i in range(n):
                blocks.append(InvertedResidual(c, w(c_out), stride if i == 0 else 1, 6))
                c = w(c_out)
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(c, w(320), 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w(320), num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.fused(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


def mobilenetv2_cifar(num_classes: int = 10, width: float = 1.0) -> MobileNetV2Cifar:
    return MobileNetV2Cifar(num_classes, width)
