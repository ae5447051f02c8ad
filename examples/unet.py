"""A small U-Net-style encoder-decoder with a classification head: skip connections concatenated
onto the upsampled decoder path, then global pooling and a linear classifier. Every 3 x 3
convolution is a slot, including those that read a concatenation (their input channels are the
sum of both paths')."""

from __future__ import annotations

import torch
from torch import nn


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallUNet(nn.Module):
    def __init__(self, num_classes: int = 10, base: int = 16) -> None:
        super().__init__()
        b = base
        self.enc1 = double_conv(3, b)
        self.enc2 = double_conv(b, 2 * b)
        self.mid = double_conv(2 * b, 4 * b)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = double_conv(4 * b + 2 * b, 2 * b)
        self.dec1 = double_conv(2 * b + b, b)
        self.fc = nn.Linear(b, num_classes)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        return self.fc(d1.mean((2, 3)))


def small_unet(num_classes: int = 10, base: int = 16) -> SmallUNet:
    return SmallUNet(num_classes, base)
