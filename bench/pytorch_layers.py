#!/usr/bin/python3
"""PyTorch's side of bench/bench_layers.cpp: every distinct convolution of torchvision's ResNet-50 at
112x112 input, forward and backward (weight and input gradients), eager mode, channels_last (NHWC in
memory, as cuface), timed the same way: ms per call (median over repeated timed runs after a
warm-up) and GFLOP/s (2 * N * OH * OW * O * KH * KW * C per direction, backward counts two; the
stem's backward is its weight gradient alone, as in training). The last line adds up one network's
53 convolutions (forward + backward), to set beside cuface's resnet50_all_convs_fwd_bwd. Batch 32 at
112 px has the GEMM shapes of 224 px at batch 8.

  bench/pytorch_layers.py                      # CPU, batch 8, 2 threads
  bench/pytorch_layers.py --batch 32           # the shapes of 224 px at batch 8
  bench/pytorch_layers.py --device cuda        # batch 256, fp32 (no TF32) and bf16
  bench/pytorch_layers.py --threads 1 --cpu-time   # per-core speed, robust on a busy machine
                                                   # (compare with bench_layers' CPU column)
"""
import argparse
import statistics
import time

import pin_threads  # noqa: F401 (before torch: --threads reaches OpenMP and OpenBLAS)
import torch

# name, in, out, kernel, stride, padding, input size, count in the network (as in bench_layers.cpp)
RESNET50_CONVS = [
    ("stem_7x7_3_64_s2", 3, 64, 7, 2, 3, 112, 1),
    ("l1_1x1_64_64", 64, 64, 1, 1, 0, 28, 1),
    ("l1_3x3_64_64", 64, 64, 3, 1, 1, 28, 3),
    ("l1_1x1_64_256", 64, 256, 1, 1, 0, 28, 4),
    ("l1_1x1_256_64", 256, 64, 1, 1, 0, 28, 2),
    ("l2_1x1_256_128", 256, 128, 1, 1, 0, 28, 1),
    ("l2_3x3_128_128_s2", 128, 128, 3, 2, 1, 28, 1),
    ("l2_1x1_128_512", 128, 512, 1, 1, 0, 14, 4),
    ("l2_1x1_256_512_s2", 256, 512, 1, 2, 0, 28, 1),
    ("l2_1x1_512_128", 512, 128, 1, 1, 0, 14, 3),
    ("l2_3x3_128_128", 128, 128, 3, 1, 1, 14, 3),
    ("l3_1x1_512_256", 512, 256, 1, 1, 0, 14, 1),
    ("l3_3x3_256_256_s2", 256, 256, 3, 2, 1, 14, 1),
    ("l3_1x1_256_1024", 256, 1024, 1, 1, 0, 7, 6),
    ("l3_1x1_512_1024_s2", 512, 1024, 1, 2, 0, 14, 1),
    ("l3_1x1_1024_256", 1024, 256, 1, 1, 0, 7, 5),
    ("l3_3x3_256_256", 256, 256, 3, 1, 1, 7, 5),
    ("l4_1x1_1024_512", 1024, 512, 1, 1, 0, 7, 1),
    ("l4_3x3_512_512_s2", 512, 512, 3, 2, 1, 7, 1),
    ("l4_1x1_512_2048", 512, 2048, 1, 1, 0, 4, 3),
    ("l4_1x1_1024_2048_s2", 1024, 2048, 1, 2, 0, 7, 1),
    ("l4_1x1_2048_512", 2048, 512, 1, 1, 0, 4, 2),
    ("l4_3x3_512_512", 512, 512, 3, 1, 1, 4, 2),
]


def time_ms(fn, device, min_time, clock, repetitions=3):
    """Median over `repetitions` runs of the mean time of fn() over at least min_time seconds."""
    fn()  # warm-up (cuDNN's algorithm search, allocator)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    results = []
    for _ in range(repetitions):
        sync()
        iterations, start = 0, clock()
        while True:
            fn()
            iterations += 1
            sync()
            elapsed = clock() - start
            if elapsed >= min_time:
                break
        results.append(1e3 * elapsed / iterations)
    return statistics.median(results)


def bench(device, dtype, batch, min_time, clock):
    total_ms = 0.0
    total_flops = 0.0
    tag = f"{device}_{str(dtype).replace('torch.', '')}_b{batch}"
    print(f"{'shape':<24} {'fwd ms':>9} {'GFLOP/s':>8} {'bwd ms':>9} {'GFLOP/s':>8}   ({tag})")
    for name, cin, cout, k, s, p, size, count in RESNET50_CONVS:
        conv = torch.nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False)
        conv = conv.to(device=device, dtype=dtype, memory_format=torch.channels_last)
        x = torch.randn(batch, cin, size, size, device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        y = conv(x)
        dy = torch.randn_like(y).contiguous(memory_format=torch.channels_last)
        out = y.shape[-1]
        flops = 2.0 * batch * out * out * cout * k * k * cin
        forward = time_ms(lambda: conv(x), device, min_time, clock)
        stem = cin == 3  # its input is the image: training skips its data gradient
        wrt = [conv.weight] if stem else [x, conv.weight]
        backward_flops = flops if stem else 2 * flops
        backward = time_ms(lambda: torch.autograd.grad(y, wrt, dy, retain_graph=True), device, min_time, clock)
        print(f"{name:<24} {forward:9.3f} {flops / forward * 1e-6:8.1f} {backward:9.3f} {backward_flops / backward * 1e-6:8.1f}",
              flush=True)
        total_ms += count * (forward + backward)
        total_flops += count * (flops + backward_flops)
    print(f"{'resnet50_all_convs':<24} fwd+bwd {total_ms:9.1f} ms  {total_flops / total_ms * 1e-6:8.1f} GFLOP/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, help="default: 8 on the CPU, 256 on CUDA")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per timed run")
    parser.add_argument("--cpu-time", action="store_true", help="time by the process's CPU time, not the wall clock")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
          f"{'CPU' if args.cpu_time else 'wall-clock'} time")
    if args.device == "cpu":
        bench("cpu", torch.float32, args.batch or 8, args.min_time, clock)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32, as cuface's Precision::FP32
        print(torch.cuda.get_device_name())
        for dtype in (torch.float32, torch.bfloat16):
            bench("cuda", dtype, args.batch or 256, args.min_time, time.perf_counter)


if __name__ == "__main__":
    main()
