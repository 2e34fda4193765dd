#!/usr/bin/python3
"""Writes tests/fixtures/batch_norm.safetensors: PyTorch's own BatchNorm numbers, which
tests/layers/test_batch_norm.cpp compares cuface's BatchNorm layer with.

Three cases (torch CPU, float32, fixed seed), each a prefix of the tensor names:
  bn2d       nn.BatchNorm2d(5), eps 1e-5, momentum 0.1, input [3, 5, 4, 6] (NCHW in torch)
  bn2d_relu  nn.BatchNorm2d(3) followed by ReLU, momentum 0.003 (TensorFlow's "decay 0.997"),
             input [2, 3, 5, 3]: checks cuface's fused BN + ReLU
  bn1d       nn.BatchNorm1d(7), eps 1e-3, input [6, 7]
For each case: the input x, weight, bias, running_mean/running_var before, then one training
forward (y_train, running stats after, num_batches_tracked after), backward of sum(dy * y)
(dx_train, dweight_train, dbias_train), and an evaluation forward/backward with the updated running
statistics (y_eval, dx_eval, dweight_eval, dbias_eval). Activations are stored NHWC, the layout
cuface uses ([N, H, W, C]; [N, C] for 1-d). eps and momentum are in the metadata.

Debian's python3 has no `safetensors` package, so the file is written by hand (8-byte header length,
JSON header padded to 8 bytes, little-endian data), as scripts/make_safetensors_fixture.py does.
"""
import json
import os
import struct

import torch

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                       "batch_norm.safetensors")


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous() if t.dim() == 4 else t.contiguous()


def run_case(prefix, module, x, relu, tensors, metadata):
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.3)
        module.running_mean.normal_(0.0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
    tensors[f"{prefix}.x"] = nhwc(x)
    tensors[f"{prefix}.weight"] = module.weight.detach().clone()
    tensors[f"{prefix}.bias"] = module.bias.detach().clone()
    tensors[f"{prefix}.running_mean_before"] = module.running_mean.clone()
    tensors[f"{prefix}.running_var_before"] = module.running_var.clone()
    dy = torch.randn_like(x)
    tensors[f"{prefix}.dy"] = nhwc(dy)

    for mode in ("train", "eval"):
        module.train(mode == "train")
        module.zero_grad()
        xin = x.clone().requires_grad_(True)
        y = module(xin)
        if relu:
            y = torch.relu(y)
        (y * dy).sum().backward()
        tensors[f"{prefix}.y_{mode}"] = nhwc(y.detach())
        tensors[f"{prefix}.dx_{mode}"] = nhwc(xin.grad)
        tensors[f"{prefix}.dweight_{mode}"] = module.weight.grad.clone()
        tensors[f"{prefix}.dbias_{mode}"] = module.bias.grad.clone()
        if mode == "train":
            tensors[f"{prefix}.running_mean_after"] = module.running_mean.clone()
            tensors[f"{prefix}.running_var_after"] = module.running_var.clone()
            tensors[f"{prefix}.num_batches_tracked_after"] = module.num_batches_tracked.clone().to(torch.int32)
    metadata[f"{prefix}.eps"] = repr(module.eps)
    metadata[f"{prefix}.momentum"] = repr(module.momentum)
    metadata[f"{prefix}.relu"] = "1" if relu else "0"


def save_safetensors(path, tensors, metadata):
    codes = {torch.float32: ("F32", "<f4"), torch.int32: ("I32", "<i4")}
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        code, little_endian = codes[t.dtype]
        data = t.contiguous().numpy().astype(little_endian).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path + ".tmp", "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for data in blobs:
            out.write(data)
    os.replace(path + ".tmp", path)
    return 8 + len(text) + offset


def main():
    torch.manual_seed(20240607)
    tensors, metadata = {}, {"producer": "scripts/make_bn_fixture.py", "torch": torch.__version__}
    run_case("bn2d", torch.nn.BatchNorm2d(5), torch.randn(3, 5, 4, 6) * 2.0 + 0.5, False, tensors, metadata)
    run_case("bn2d_relu", torch.nn.BatchNorm2d(3, momentum=0.003), torch.randn(2, 3, 5, 3) + 0.2, True, tensors,
             metadata)
    run_case("bn1d", torch.nn.BatchNorm1d(7, eps=1e-3), torch.randn(6, 7) * 0.5 - 1.0, False, tensors, metadata)
    size = save_safetensors(FIXTURE, tensors, metadata)
    print(f"wrote {FIXTURE} ({size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
