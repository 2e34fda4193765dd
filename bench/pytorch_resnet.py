#!/usr/bin/python3
"""PyTorch's side of bench/bench_resnet.cpp: the same face model and the same training step.

Network: torchvision ResNet-50 (or -18) V1 (fc removed), dropout 0.4 -> Linear 2048->512 -> BatchNorm1d with
its scale fixed to 1 (the embedding), ArcFace (s 64, m 0.5) over 10,000 identities written as
InsightFace writes it (normalise, cos, margin on the target column, scale, cross-entropy). One step =
forward + loss + backward + SGD (momentum 0.9, weight decay 5e-4) + zero_grad; embed = the model in
eval mode under no_grad. Eager mode, channels_last (NHWC in memory, as cuface). Images are random
and already on the device, as in bench_resnet.

  bench/pytorch_resnet.py                    # CPU, bench_resnet's CPU cases, 2 threads (OpenMP and
                                             # OpenBLAS pools both pinned to --threads)
  bench/pytorch_resnet.py --device cuda      # batch 256, fp32 (TF32 off) and bf16 autocast
  bench/pytorch_resnet.py --threads 1 --cpu-time   # per-core speed, robust on a busy machine
                                                   # (compare with bench_resnet's CPU column)
  --layout nchw: PyTorch 1.13's CPU BatchNorm is 1.6x slower in channels_last; report both.
"""
import argparse
import math
import statistics
import time

import pin_threads  # noqa: F401 (before torch: --threads reaches OpenMP and OpenBLAS)
import torch
import torch.nn.functional as F
import torchvision

IDENTITIES = 10000


class FaceModel(torch.nn.Module):
    def __init__(self, arch="resnet50"):
        super().__init__()
        self.backbone = getattr(torchvision.models, arch)()
        features = self.backbone.fc.in_features
        self.backbone.fc = torch.nn.Identity()
        self.dropout = torch.nn.Dropout(0.4)
        self.fc = torch.nn.Linear(features, 512)
        self.bn = torch.nn.BatchNorm1d(512)
        self.bn.weight.requires_grad_(False)  # InsightFace's fixed-scale final BN
        self.arc_weight = torch.nn.Parameter(torch.randn(IDENTITIES, 512) * 0.01)

    def embed(self, images):
        return self.bn(self.fc(self.dropout(self.backbone(images))))

    def loss(self, images, labels, s=64.0, m=0.5):
        # The margin and the loss in fp32 (as cuface, and bench/pytorch_margin.py): under bf16 autocast
        # F.linear gives bf16 cosines while acos runs in fp32, and scatter needs one dtype.
        cos = F.linear(F.normalize(self.embed(images)), F.normalize(self.arc_weight)).float().clamp(-1, 1)
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target)
        with_margin = torch.cos(theta + m)
        # InsightFace's fallback where theta + m would pass pi: cos(theta) - m sin(m).
        with_margin = torch.where(theta + m < math.pi, with_margin, target - m * math.sin(m))
        logits = cos.scatter(1, labels[:, None], with_margin) * s
        return F.cross_entropy(logits, labels)


def timed(fn, sync, min_seconds, clock):
    fn()  # warm-up (cuDNN autotune, allocator)
    sync()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 3:
        t0 = clock()
        fn()
        sync()
        times.append(clock() - t0)
    return statistics.median(times)


def run(arch, device, batch, size, dtype, args):
    layout = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    model = FaceModel(arch).to(device).to(memory_format=layout)
    images = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
    labels = (torch.arange(batch, device=device) * 7919) % IDENTITIES
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                weight_decay=5e-4)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bf16")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        with autocast:
            loss = model.loss(images, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    def embed():
        with torch.no_grad(), autocast:
            model.embed(images)

    clock = time.process_time if args.cpu_time else time.perf_counter
    model.train()
    train_s = timed(step, sync, args.min_seconds, clock)
    model.eval()
    embed_s = timed(embed, sync, args.min_seconds, clock)
    tag = f"{device}_{dtype}_b{batch}_{size}px_{args.layout}" + ("_cputime" if args.cpu_time else "")
    print(f"pytorch {arch}_train_step/{tag}: {1e3 * train_s:9.1f} ms  {batch / train_s:9.1f} img/s")
    print(f"pytorch {arch}_embed/{tag}:      {1e3 * embed_s:9.1f} ms  {batch / embed_s:9.1f} img/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--cases", default=None,
                        help="ARCH:BATCH:SIZE,... (CPU default: bench_resnet's resnet50:8:112,resnet50:8:224,"
                             "resnet50:16:112,resnet18:64:112; CUDA: resnet50:256:112,resnet50:256:224)")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--layout", default="channels_last", choices=["channels_last", "nchw"])
    parser.add_argument("--cpu-time", action="store_true", help="time in process CPU seconds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(1)
    default = ("resnet50:8:112,resnet50:8:224,resnet50:16:112,resnet18:64:112" if args.device == "cpu"
               else "resnet50:256:112,resnet50:256:224")
    for case in (args.cases or default).split(","):
        arch, batch, size = case.split(":")
        for dtype in (("fp32",) if args.device == "cpu" else ("fp32", "bf16")):
            run(arch, args.device, int(batch), int(size), dtype, args)


if __name__ == "__main__":
    main()
