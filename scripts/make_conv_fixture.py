#!/usr/bin/python3
"""Writes tests/fixtures/conv_pool_linear.safetensors: PyTorch's own results for convolution,
max pooling, global average pooling and linear layers, which the layer tests in tests/layers/
compare with cuface's (fp32 norm-wise relative error < 1e-4).

For each case the file holds the input, the parameters as PyTorch stores them (convolution weights
OIHW [out, in, kh, kw], linear weights [out, in]), a fixed upstream gradient dy, and what PyTorch
computes on the CPU in float32: the output y and the gradients dx, dweight, dbias of
L = sum(y * dy). Image tensors are written NHWC (cuface's layout); PyTorch runs NCHW and the script
permutes. Names are "<case>.<tensor>"; the metadata records each case's hyper-parameters.

Debian's python3 has no `safetensors` package, so the file is written by hand, as the reference
implementation lays it out (8-byte little-endian header length, JSON header padded with spaces to a
multiple of 8, then the tensors' little-endian bytes).
"""
import json
import os
import struct

import torch

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                       "conv_pool_linear.safetensors")

# name: (N, H, W, C_in, C_out, kernel, stride, padding, bias)
CONV_CASES = {
    "conv3x3s2": (2, 9, 8, 3, 5, 3, 2, 1, True),
    "conv7x7s2": (1, 13, 11, 4, 6, 7, 2, 3, False),
    "conv1x1s2": (2, 5, 6, 6, 7, 1, 2, 0, False),
}


def nchw(t):
    return t.permute(0, 3, 1, 2).contiguous()


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def run(module, x_nhwc, image=True):
    """Forward and backward of `module` on an NHWC input (NCHW inside); returns y, dy, dx in NHWC."""
    x = (nchw(x_nhwc) if image else x_nhwc.clone()).requires_grad_()
    y = module(x)
    dy = torch.randn(y.shape)
    (y * dy).sum().backward()
    if image and y.dim() == 4:
        return nhwc(y.detach()), nhwc(dy), nhwc(x.grad)
    return y.detach(), dy, (nhwc(x.grad) if image else x.grad)


def main():
    torch.manual_seed(20240607)
    tensors = {}
    metadata = {"producer": "scripts/make_conv_fixture.py", "torch": torch.__version__}

    for name, (n, h, w, c, o, k, s, p, bias) in CONV_CASES.items():
        conv = torch.nn.Conv2d(c, o, k, stride=s, padding=p, bias=bias)
        x = torch.randn(n, h, w, c)
        y, dy, dx = run(conv, x)
        tensors.update({f"{name}.x": x, f"{name}.weight": conv.weight.detach(), f"{name}.dy": dy,
                        f"{name}.y": y, f"{name}.dx": dx, f"{name}.dweight": conv.weight.grad})
        if bias:
            tensors[f"{name}.bias"] = conv.bias.detach()
            tensors[f"{name}.dbias"] = conv.bias.grad
        metadata[name] = json.dumps({"kernel": k, "stride": s, "padding": p, "bias": bias})

    x = torch.randn(2, 9, 7, 5)
    y, dy, dx = run(torch.nn.MaxPool2d(3, stride=2, padding=1), x)
    tensors.update({"maxpool.x": x, "maxpool.y": y, "maxpool.dy": dy, "maxpool.dx": dx})

    x = torch.randn(2, 4, 3, 6)
    y, dy, dx = run(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), x)
    tensors.update({"avgpool.x": x, "avgpool.y": y, "avgpool.dy": dy, "avgpool.dx": dx})

    linear = torch.nn.Linear(10, 6)
    x = torch.randn(4, 10)
    y, dy, dx = run(linear, x, image=False)
    tensors.update({"linear.x": x, "linear.weight": linear.weight.detach(), "linear.bias": linear.bias.detach(),
                    "linear.dy": dy, "linear.y": y, "linear.dx": dx, "linear.dweight": linear.weight.grad,
                    "linear.dbias": linear.bias.grad})

    header = {"__metadata__": metadata}
    data = []
    offset = 0
    for key, t in tensors.items():
        raw = t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        data.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(FIXTURE + ".tmp", "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for raw in data:
            out.write(raw)
    os.replace(FIXTURE + ".tmp", FIXTURE)
    print(f"wrote {FIXTURE} ({8 + len(text) + offset} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
