"""VGG-16 for CIFAR (32 x 32 inputs), as the HetConv (Singh et al., CVPR 2019) and SPConv
(Zhang et al., IJCAI 2020) papers evaluate it: thirteen 3 x 3 convolutions with batch norm in five
blocks separated by 2 x 2 max-pooling, then a linear classifier on the 1 x 1 x 512 feature map.

    nasconv space from-model examples/vgg.py:vgg16_cifar --input 3x32x32 --out vgg16.yaml
"""

from __future__ import annotations

from torch import nn

#: channels of each 3 x 3 convolution, "M" a 2 x 2 max-pool (VGG configuration D)
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, config: tuple = VGG16, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            out = max(1, int(v * width))
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def vgg16_cifar(num_classes: int = 10, width: float = 1.0) -> VGG:
    """VGG-16 with batch norm for 32 x 32 images; ``width`` scales every convolution's channels."""
    return VGG(VGG16, num_classes, width)
