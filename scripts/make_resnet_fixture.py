#!/usr/bin/python3
"""Whole-network PyTorch references for cuface's ResNet backbone (face/model/resnet.h), which
tests/face/test_resnet_pytorch.cpp compares with.

Default: writes tests/fixtures/resnet_tiny.safetensors, a torchvision-topology ResNet at the size of
resnet_spec("tiny"): stem conv1 7x7/2 (3 -> 8), bn1, relu, maxpool 3/2/1, layer1..layer4 of ONE
torchvision Bottleneck each (planes 8, 16, 32, 64; expansion 4; stride on the 3x3 conv; downsample =
Sequential(conv 1x1/stride, BN) as torchvision's _make_layer builds it), adaptive average pool,
flatten, no fc. Every weight and BN buffer is random (seeded), so nothing hides behind an identity
BN. Tensors (activations NHWC, the layout cuface uses; weights OIHW as PyTorch stores them):
  state.<name>        the initial state_dict, every parameter and buffer
  x                   the input [2, 64, 64, 3]
  y_train             the output [2, 256] in training mode (BN batch statistics)
  after.<name>        running_mean / running_var / num_batches_tracked after that forward
  r                   [2, 256]; loss = sum(y_train * r)
  grad.<name>         d loss / d parameter for every parameter
  y_eval              the output in evaluation mode of the INITIAL state (running statistics)

--full DIR: torchvision.models.resnet50(weights=None) (seeded; BN buffers and affine parameters
randomised mildly), evaluation mode, writes DIR/resnet50.safetensors (the whole state_dict, fc
included) and DIR/resnet50_io.safetensors (x [1, 112, 112, 3] NHWC and y, the pooled 2048-d features
before fc). The test runs this at test time rather than committing 100 MB.

Debian's python3 has no `safetensors` package; the writer of scripts/make_bn_fixture.py is reused.
"""
import argparse
import copy
import os
import sys

import torch
import torchvision
from torchvision.models.resnet import Bottleneck

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bn_fixture import save_safetensors  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                       "resnet_tiny.safetensors")


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def plain(t):
    """float32 stays, integer counters become int32 (what the writer and cuface's loader hold)."""
    return t.detach().clone().to(torch.int32 if not t.is_floating_point() else torch.float32).contiguous()


class TinyResNet(torch.nn.Module):
    """torchvision.models.ResNet's forward without fc, one Bottleneck per stage, stem width 8."""

    def __init__(self, width=8):
        super().__init__()
        self.inplanes = width
        self.conv1 = torch.nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, 1)
        self.layer2 = self._make_layer(width * 2, 2)
        self.layer3 = self._make_layer(width * 4, 2)
        self.layer4 = self._make_layer(width * 8, 2)
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))

    def _make_layer(self, planes, stride):
        # As torchvision's ResNet._make_layer for one block.
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = torch.nn.Sequential(
                torch.nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                torch.nn.BatchNorm2d(planes * Bottleneck.expansion))
        block = Bottleneck(self.inplanes, planes, stride, downsample)
        self.inplanes = planes * Bottleneck.expansion
        return torch.nn.Sequential(block)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def randomise(model, spread):
    """Random convolution weights (torchvision's own init, seeded) plus random BN parameters and
    buffers, `spread` setting how far BN strays from the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(1.0 - spread, 1.0 + spread)
                m.bias.normal_(0.0, 0.5 * spread)
                m.running_mean.normal_(0.0, 0.5 * spread)
                m.running_var.uniform_(1.0 - spread, 1.0 + spread)
                m.num_batches_tracked.fill_(5)


def make_tiny():
    torch.manual_seed(20261129)
    model = TinyResNet()
    randomise(model, 0.5)
    initial = copy.deepcopy(model)
    x = torch.randn(2, 3, 64, 64)
    tensors = {}
    for name, t in model.state_dict().items():
        tensors[f"state.{name}"] = plain(t)
    tensors["x"] = nhwc(x)

    model.train()
    y = model(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    tensors["y_train"] = plain(y)
    tensors["r"] = plain(r)
    for name, t in model.state_dict().items():
        if "running_" in name or "num_batches_tracked" in name:
            tensors[f"after.{name}"] = plain(t)
    for name, p in model.named_parameters():
        tensors[f"grad.{name}"] = plain(p.grad)

    initial.eval()
    with torch.no_grad():
        tensors["y_eval"] = plain(initial(x))
    metadata = {"producer": "scripts/make_resnet_fixture.py", "torch": torch.__version__,
                "torchvision": torchvision.__version__}
    size = save_safetensors(FIXTURE, tensors, metadata)
    print(f"wrote {FIXTURE} ({size} bytes, {len(tensors)} tensors)")


def make_full(folder):
    torch.manual_seed(20261129)
    model = torchvision.models.resnet50(weights=None)
    randomise(model, 0.2)
    model.eval()
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        features = torch.nn.Sequential(*list(model.children())[:-1])  # everything up to avgpool
        y = torch.flatten(features(x), 1)
    os.makedirs(folder, exist_ok=True)
    state = {name: plain(t) for name, t in model.state_dict().items()}
    metadata = {"producer": "scripts/make_resnet_fixture.py --full", "torch": torch.__version__}
    save_safetensors(os.path.join(folder, "resnet50.safetensors"), state, metadata)
    save_safetensors(os.path.join(folder, "resnet50_io.safetensors"), {"x": nhwc(x), "y": plain(y)}, metadata)
    print(f"wrote {folder}/resnet50.safetensors ({len(state)} tensors) and resnet50_io.safetensors")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", metavar="DIR", help="write a ResNet-50 state_dict and its input/output to DIR")
    args = parser.parse_args()
    if args.full:
        make_full(args.full)
    else:
        make_tiny()


if __name__ == "__main__":
    main()
