#!/usr/bin/python3
"""The ArcFace margin head in PyTorch, the side-by-side reference for bench/bench_margin.

InsightFace's formulation: normalise, linear, margin on the target logits by gather/scatter,
cross-entropy; autograd does the backward (the true chain rule through the margin, as cuface does).
One training step = forward + backward (dL/dx and dL/dW). Prints the time per step (wall, and the
process CPU time of all threads, fairer on a shared machine) and the peak
memory the step adds over what is live before it (x, labels, W and its gradient): on CUDA from
torch.cuda.max_memory_allocated, on the CPU from the process's peak resident set (VmHWM after a reset
through /proc/self/clear_refs, with big buffers mmap-ed so that freed memory leaves the resident set).

    bench/pytorch_margin.py --device cpu --classes 10000 100000
    bench/pytorch_margin.py --device cuda --classes 10000 100000 200000 --dtype fp32 bf16
"""
import argparse
import ctypes
import math
import os
import time

import pin_threads  # noqa: F401 (before torch: --threads reaches OpenMP and OpenBLAS)
import torch
import torch.nn.functional as F


def arcface_loss(x, weight, labels, s=64.0, m=0.5):
    cos = F.linear(F.normalize(x), F.normalize(weight))
    cos = cos.float()  # the margin and the loss in fp32, as under autocast
    index = torch.where(labels != -1)[0]
    target = cos[index, labels[index]]  # gather
    sine = torch.sqrt((1.0 - target * target).clamp(min=0.0))
    phi = target * math.cos(m) - sine * math.sin(m)  # cos(theta + m)
    phi = torch.where(target > math.cos(math.pi - m), phi, target - m * math.sin(m))
    logits = cos.index_put((index, labels[index]), phi)  # scatter
    return F.cross_entropy(logits * s, labels, ignore_index=-1)


def status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def extra_megabytes(device, step):
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 1e6
    before = status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step()
    return (status_bytes("VmHWM") - before) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--classes", type=int, nargs="+", default=[10000])
    parser.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="bf16: autocast, so the linear layer runs on bf16 operands")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per case")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD, as bench_margin does
    torch.manual_seed(0)
    for classes in args.classes:
        for dtype in args.dtype:
            x = torch.randn(args.rows, args.dim, device=args.device, requires_grad=True)
            weight = (0.01 * torch.randn(classes, args.dim, device=args.device)).requires_grad_()
            labels = (torch.arange(args.rows, device=args.device) * 7919) % classes

            def step():
                with torch.autocast(args.device, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    loss = arcface_loss(x, weight, labels)
                loss.backward()
                x.grad = None  # W's gradient accumulates, x's is consumed

            def synchronize():
                if args.device == "cuda":
                    torch.cuda.synchronize()

            step()
            synchronize()
            extra = extra_megabytes(args.device, step)
            steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < args.seconds or steps < 3:
                step()
                synchronize()
                steps += 1
            elapsed = (time.perf_counter() - start) / steps
            cpu = (time.process_time() - cpu_start) / steps  # all threads, as bench_margin's CPU column
            print(f"pytorch {torch.__version__} {args.device} {dtype} N={args.rows} D={args.dim} C={classes}: "
                  f"{elapsed * 1e3:.1f} ms/step wall, {cpu * 1e3:.1f} ms/step CPU time, extra peak {extra:.1f} MB "
                  f"({steps} steps, {args.threads} threads)")


if __name__ == "__main__":
    main()
