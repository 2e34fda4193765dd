#!/usr/bin/python3
"""PyTorch side of bench/bench_norm.cpp: the same operations at the same shapes, named the same way
(device/operation/dtype/shape), so the two can be compared line by line.

  bench/pytorch_norm.py                          # CPU, batch 8, torch.get_num_threads() threads
  bench/pytorch_norm.py --threads 2              # match OMP_NUM_THREADS of bench_norm
  bench/pytorch_norm.py --device cuda            # batch 256, f32 and bf16
  bench/pytorch_norm.py --cuface bench.json      # also print cuface / PyTorch time ratios, from
                                                 # bench_norm --benchmark_out=bench.json (the fastest
                                                 # of its --benchmark_repetitions is used)

Image tensors are NCHW in channels_last memory format (NHWC in memory, as cuface stores them).
PyTorch has no fused BN + ReLU on the CPU, so "bn_relu_*" times BN followed by an in-place ReLU (and
threshold_backward before BN's backward), and "bn_add_relu_*" (a ResNet block's end) BN, an in-place
add of the shortcut and ReLU; those fusions are the point of cuface's variants.
"""
import argparse
import json
import time

import pin_threads  # noqa: F401 (before torch: --threads reaches OpenMP and OpenBLAS)
import torch


def images(batch):
    return [(batch, 56, 56, 64), (batch, 28, 28, 256), (batch, 7, 7, 1024)]


def make(shape, dtype, device):
    """A tensor of logical shape `shape` (NHWC), as PyTorch NCHW channels_last for rank 4."""
    t = torch.rand(shape, device=device) * 3.0 - 1.0
    if len(shape) == 4:
        t = t.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: exactly channels_last
    return t.to(dtype)


def cases(batch):
    bn = torch.ops.aten.native_batch_norm
    bn_backward = torch.ops.aten.native_batch_norm_backward
    threshold_backward = torch.ops.aten.threshold_backward

    def bn_train(o):
        return bn(o["x"], o["w"], o["b"], o["rm"], o["rv"], True, 0.1, 1e-5)

    def bn_relu_train(o):
        return bn(o["x"], o["w"], o["b"], o["rm"], o["rv"], True, 0.1, 1e-5)[0].relu_()

    def bn_add_relu_train(o):  # eager PyTorch's residual join: BN, then add, then ReLU, in place
        return bn(o["x"], o["w"], o["b"], o["rm"], o["rv"], True, 0.1, 1e-5)[0].add_(o["dy"]).relu_()

    def bn_eval(o):
        return bn(o["x"], o["w"], o["b"], o["rm"], o["rv"], False, 0.1, 1e-5)

    def bn_back(o):
        return bn_backward(o["dy"], o["x"], o["w"], o["rm"], o["rv"], o["mean"], o["invstd"], True, 1e-5,
                           [True, True, True])

    def bn_relu_back(o):
        g = threshold_backward(o["dy"], o["y"], 0)
        return bn_backward(g, o["x"], o["w"], o["rm"], o["rv"], o["mean"], o["invstd"], True, 1e-5,
                           [True, True, True])

    out = [("bn_train_forward", bn_train, images(batch) + [(batch, 512)]),
           ("bn_relu_train_forward", bn_relu_train, images(batch)),
           ("bn_add_relu_train_forward", bn_add_relu_train, images(batch)),
           ("bn_eval_forward", bn_eval, images(batch)),
           ("bn_backward", bn_back, images(batch) + [(batch, 512)]),
           ("bn_relu_backward", bn_relu_back, images(batch)),
           ("bn_add_relu_backward", bn_relu_back, images(batch)),  # the mask's output is the shortcut's gradient
           ("relu_forward", lambda o: torch.relu(o["x"]), images(batch)),
           ("relu_backward", lambda o: threshold_backward(o["dy"], o["x"], 0), images(batch)),
           ("add_relu", lambda o: (o["x"] + o["dy"]).relu_(), images(batch)),
           ("dropout", lambda o: torch.nn.functional.dropout(o["x"], 0.4, training=True),
            [(batch, 2048), (batch, 28, 28, 256)])]
    return out


def operands(shape, dtype, device):
    c = shape[-1]
    o = {"x": make(shape, dtype, device), "dy": make(shape, dtype, device)}
    o.update({k: torch.ones(c, device=device) for k in ("w", "b", "rm", "rv")})
    # Parameters in fp32 with bf16 activations is what cuface does; PyTorch's CUDA BN accepts it.
    y, mean, invstd = torch.ops.aten.native_batch_norm(o["x"], o["w"], o["b"], o["rm"], o["rv"], True, 0.1, 1e-5)
    o.update({"y": y, "mean": mean, "invstd": invstd})
    return o


def time_op(fn, o, device, min_time):
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn(o)
    sync()
    # Grow the batch of calls until one batch takes min_time / 5, then take the fastest of 5 batches
    # (the least disturbed by other work on the machine).
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn(o)
            sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / 5 or calls >= 1 << 20:
            break
        calls *= 2
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn(o)
            sync()
        samples.append((time.perf_counter() - start) / calls)
    return min(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per case")
    parser.add_argument("--cuface", help="bench_norm JSON output, to print time ratios")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = 256 if args.device == "cuda" else 8
    dtypes = [("f32", torch.float32)] + ([("bf16", torch.bfloat16)] if args.device == "cuda" else [])
    cuface = {}
    if args.cuface:
        with open(args.cuface) as f:
            for b in json.load(f)["benchmarks"]:
                if b.get("run_type", "iteration") != "iteration":
                    continue  # aggregates; with --benchmark_repetitions the fastest repetition is used
                name = b.get("run_name", b["name"])
                scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
                cuface[name] = min(cuface.get(name, float("inf")), b["real_time"] * scale)

    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'case':48s} {'pytorch us':>12s}" + (f" {'cuface us':>10s} {'cuface/pytorch':>15s}" if cuface else ""))
    with torch.no_grad():
        for dtype_name, dtype in dtypes:
            for name, fn, shapes in cases(batch):
                for shape in shapes:
                    key = f"{args.device}/{name}/{dtype_name}/{'x'.join(map(str, shape))}"
                    seconds = time_op(fn, operands(shape, dtype, args.device), args.device, args.min_time)
                    line = f"{key:48s} {seconds * 1e6:12.1f}"
                    if key in cuface:
                        line += f" {cuface[key] * 1e6:10.1f} {cuface[key] / seconds:15.2f}"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
