#!/usr/bin/python3
"""The PyTorch twin of `cuface train FR`: the same network trained the same way on the same packed
pixels, so that a gap in held-out accuracy between the two is the engine's and not the recipe's.

The same as cuface (where each is defined there):
  pixels    the pack's records as RGB bytes (grey expanded to three equal channels), each mirrored with
            probability 1/2 (--flip), zoomed and shifted (--scale-jitter, --shift-jitter: one bilinear
            affine map, black outside) and colour-jittered (--colour-jitter), rounded to bytes, then
            (x - 127.5) / 128               face/loader/augment.cpp, face/image/warp.cpp, kernels/image.h
  sampling  a seeded shuffle of the records every epoch, batches cut from it, the short last one dropped
  network   ResNet in torchvision's topology (tiny: bottleneck blocks, width 8, one block per stage),
            mean-pooled -> dropout -> Linear -> BatchNorm1d with its scale fixed at 1 (the embedding) ->
            margin head on the normalised embedding and class centres
                                             face/model/resnet.cpp, face_model.cpp, kernels/margin.h
  init      convolutions N(0, 2 / (out k k)), Linear U(+-1/sqrt(in)), BN scale 1 shift 0, centres N(0, 0.01)
  optimiser SGD with momentum (v = mu v + g + wd w; w -= lr v): --wd-backbone on the convolutions,
            --wd-fr on the embedding's Linear weight and the centres, none on BatchNorm parameters and
            biases                                                             face/train/optimizer.cpp
  schedule  lr x (step + 1) / --warmup during the warm-up, x cosine from --lr to --min-lr over the
            steps, or constant (cuface's plateau rule cannot lower it before --patience steps)
                                                                                engine/lr_schedule.h
  loss      the mean cross-entropy of the margin logits; BatchNorm momentum 0.1, eps 1e-5
Different: the random numbers (cuface draws from Philox: same distributions, other values, other
sample order) and the JPEG decoder (stb_image there, Pillow here: on LFW at 64 px, 0.7% of the values
differ, by one).
Parameter names are cuface's, so a cuface checkpoint loads into FaceModel: on a tiny run's weights the
twin's embeddings of a held-out pack equal `cuface embed`'s to 4e-6.

Usage, on the person-disjoint LFW split of docs/recipes.md (DATA=/work/shared/data):
  bench/recipe_split.sh $DATA /tmp/split 64 2                       # the training pack /tmp/split/train
  while read p; do for f in $DATA/lfw/images/$p/*.jpg; do printf '%s\\t%s\\n' "$f" "$p"; done
  done < /tmp/split/heldout_people.txt > /tmp/split/heldout.list    # every held-out person's images
  build/bin/cuface pack /tmp/split/heldout.list --format list --align $DATA/lfw/landmarks5.txt \\
      --size 64 --encoding raw --out /tmp/split/heldout
  bench/pytorch_recipe.py --train /tmp/split/train --heldout-pack /tmp/split/heldout --out /tmp/twin \\
      --arch tiny --input-size 64 --batch 64 --steps 300 --margin cosface --margin-s 16 --margin-m 0.1 \\
      --lr-schedule cosine --warmup 30 --min-lr 1e-3
  build/bin/cuface eval-fr --embeddings /tmp/twin/embeddings.npy --pairs /tmp/split/heldout_pairs.txt \\
      --images $DATA/lfw/images --folds 10
and cuface's side: bench/recipe_run.sh /tmp/split RUN with the same flags. The held-out pack is raw, so
its pixels are exactly those `cuface eval-fr --model RUN --align` embeds. Writes OUT/config.json,
OUT/loss_debug.csv (cuface's columns), and with --heldout-pack OUT/embeddings.npy (float32, one row per
record, evaluation mode, no flip test: eval-fr's default) and OUT/embeddings.txt (each row's source).
"""
import argparse
import importlib.util
import io
import json
import math
import os
import sys
import time

ARCHS = {  # face/model/resnet.cpp: bottleneck blocks?, blocks per stage, width of the stem and layer1
    "resnet18": (False, [2, 2, 2, 2], 64), "resnet34": (False, [3, 4, 6, 3], 64),
    "resnet50": (True, [3, 4, 6, 3], 64), "resnet100": (True, [3, 13, 30, 3], 64), "tiny": (True, [1, 1, 1, 1], 8)}


# cuface train's flags with its defaults (face/train/config.h), then the twin's --threads.
FLAGS = {"--arch": "resnet50", "--input-size": 112, "--embedding-size": 512, "--embedding-dropout": 0.4,
         "--bn-momentum": 0.1, "--margin": "arcface", "--margin-s": 64.0, "--margin-m": None, "--margin-m1": 1.0,
         "--margin-m2": 0.3, "--margin-m3": 0.2, "--batch": 128, "--steps": 0, "--epochs": 1, "--lr": 0.1,
         "--lr-schedule": "plateau", "--patience": 2000, "--min-lr": 1e-6, "--warmup": 0, "--momentum": 0.9,
         "--wd-backbone": 5e-4, "--wd-fr": 5e-4, "--scale-jitter": 0.0, "--shift-jitter": 0.0,
         "--colour-jitter": 0.0, "--seed": 1, "--threads": 2}
CHOICES = {"--arch": sorted(ARCHS), "--margin": ["arcface", "cosface", "combined"],
           "--lr-schedule": ["plateau", "cosine"]}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, metavar="PREFIX", help="the training pack (cuface pack --out)")
    p.add_argument("--heldout-pack", metavar="PREFIX", help="a pack to embed after training")
    p.add_argument("--out", required=True, help="the output folder")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="default on")
    for flag, default in FLAGS.items():
        help_text = f"default {default}" if default is not None else "default 0.35 for cosface, else 0.5"
        p.add_argument(flag, type=float if default is None else type(default), default=default,
                       choices=CHOICES.get(flag), help=help_text)
    args = p.parse_args()
    if args.margin_m is None:  # CosFace's m defaults to 0.35, the others' to 0.5
        args.margin_m = 0.35 if args.margin == "cosface" else 0.5
    return args


ARGS = parse_args()  # before torch is imported: its thread pools read these once
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)
# Idle threads sleep, as cuface sets for itself (face/main.cpp): spinning ones make a shared machine
# 40x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402


def fail(message):
    sys.exit("pytorch_recipe: " + message)


def read_pack(prefix):
    """Every record of a pack in pack order: u8 [N, H, W, 3] pixels, identities [N], source paths."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("pack_dump", os.path.join(here, "..", "scripts", "pack_dump.py"))
    pack_dump = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_dump)
    try:
        sidecar = json.load(open(prefix + ".json"))
        shards = [pack_dump.open_shard(os.path.join(os.path.dirname(prefix), s["file"])) for s in sidecar["shards"]]
    except (OSError, ValueError, KeyError, AssertionError) as e:
        fail(f"cannot read the pack {prefix}: {e}")
    pixels, identities, sources = [], [], []
    for k in range(sidecar["records"]):  # record k of the pack is record k // N of shard k mod N
        data, offsets = shards[k % len(shards)]
        r = pack_dump.record(data, offsets[k // len(shards)])
        if not r["crc_ok"]:
            fail(f"{prefix}: record {k} ({r['source']}) fails its CRC")
        if r["encoding"] == "raw":
            image = np.frombuffer(r["image"], np.uint8).reshape(r["height"], r["width"], 3)
        else:  # grey JPEGs become three equal channels, as cuface decodes them
            image = np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB"))
        if pixels and image.shape != pixels[0].shape:
            fail(f"{prefix}: records of sizes {pixels[0].shape} and {image.shape}; pack at one --size")
        pixels.append(image)
        identities.append(r["identity"])
        sources.append(r["source"])
    return torch.from_numpy(np.stack(pixels)), torch.tensor(identities), sources


def render(pixels, size, generator=None, flip=False, scale_jitter=0.0, shift_jitter=0.0, colour_jitter=0.0):
    """face/loader/augment.cpp's render_sample for a batch, then the normalisation: [N, 3, size, size].
    Output pixel -> source is one affine map. In grid_sample's [-1, 1] coordinates (pixel centres,
    align_corners=False, cuface's convention) resizing is the identity, the mirror negates x, and a
    zoom z about the centre with a shift t pixels maps v to v / z - 2 t / size."""
    n = pixels.shape[0]
    def uniform(j):  # factors uniform in [1 - j, 1 + j]
        return 1 + j * (2 * torch.rand(n, generator=generator) - 1)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    zoom = uniform(scale_jitter)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = mirror / zoom
    theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = -2 * shift_jitter * (2 * torch.rand(n, 2, generator=generator) - 1)  # t = j size U(-1, 1)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    x = F.grid_sample(pixels.permute(0, 3, 1, 2).float(), grid, "bilinear", "zeros", align_corners=False)
    x = (x + 0.5).floor()  # cuface stores bytes here
    if colour_jitter > 0:  # brightness, contrast (towards the mean grey), saturation (towards each pixel's grey)
        brightness, contrast, saturation = (uniform(colour_jitter).view(n, 1, 1, 1) for _ in range(3))
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True) * brightness
        x = mean + contrast * (x * brightness - mean)
        grey = (x * luma).sum(1, keepdim=True)
        x = ((grey + saturation * (x - grey)).clamp(0, 255) + 0.5).floor()
    return (x - 127.5) / 128


class Block(torch.nn.Module):
    """Bottleneck 1x1 -> 3x3 (stride) -> 1x1 (x4 channels) or basic 3x3 (stride) -> 3x3, each a conv + BN
    with a ReLU after all but the last; a 1x1 conv + BN shortcut when the shape changes; ReLU(main + shortcut)."""
    def __init__(self, bottleneck, cin, width, stride, momentum):
        super().__init__()
        self.out_channels = 4 * width if bottleneck else width
        shapes = ([(cin, width, 1, 1), (width, width, 3, stride), (width, self.out_channels, 1, 1)] if bottleneck
                  else [(cin, width, 3, stride), (width, width, 3, 1)])
        self.depth = len(shapes)
        for i, (n_in, n_out, kernel, step) in enumerate(shapes, 1):
            setattr(self, f"conv{i}", torch.nn.Conv2d(n_in, n_out, kernel, step, kernel // 2, bias=False))
            setattr(self, f"bn{i}", torch.nn.BatchNorm2d(n_out, momentum=momentum))
        self.downsample = (torch.nn.Sequential(torch.nn.Conv2d(cin, self.out_channels, 1, stride, bias=False),
                                               torch.nn.BatchNorm2d(self.out_channels, momentum=momentum))
                           if stride != 1 or cin != self.out_channels else torch.nn.Identity())

    def forward(self, x):
        y = x
        for i in range(1, self.depth + 1):
            y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
            y = F.relu(y) if i < self.depth else y
        return F.relu(y + self.downsample(x))


class FaceModel(torch.nn.Module):
    """face/model/face_model.h's FR branch, with its parameter names (torchvision's for the backbone), so
    a cuface checkpoint loads with load_state_dict."""
    def __init__(self, args, classes):
        super().__init__()
        bottleneck, blocks, width = ARCHS[args.arch]
        momentum = args.bn_momentum
        self.conv1 = torch.nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width, momentum=momentum)
        channels = width
        for stage, count in enumerate(blocks):
            layer = torch.nn.Sequential()
            for b in range(count):
                layer.append(Block(bottleneck, channels, width << stage, 2 if stage > 0 and b == 0 else 1, momentum))
                channels = layer[-1].out_channels
            setattr(self, f"layer{stage + 1}", layer)
        self.embedding = torch.nn.Sequential(torch.nn.Dropout(args.embedding_dropout),
                                             torch.nn.Linear(channels, args.embedding_size),  # init as cuface's
                                             torch.nn.BatchNorm1d(args.embedding_size, momentum=momentum))
        self.embedding[2].weight.requires_grad_(False)  # InsightFace's embedding BN: scale fixed at 1
        self.fr = torch.nn.Linear(args.embedding_size, classes, bias=False)  # the class centres, N(0, 0.01)
        torch.nn.init.normal_(self.fr.weight, 0.0, 0.01)
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def embed(self, images):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(images))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.embedding(x.mean((2, 3)))


def margin_logits(cos, labels, a):
    """s cos, with s f(c) on each row's target c (kernels/margin.h)."""
    c = cos.gather(1, labels[:, None]).clamp(-1, 1)
    theta = torch.acos(c.clamp(-1 + 1e-7, 1 - 1e-7))  # keeps d acos / dc finite at c = +-1
    if a.margin == "cosface":
        f = c - a.margin_m
    elif a.margin == "combined":
        f = torch.cos(a.margin_m1 * theta + a.margin_m2) - a.margin_m3
    else:  # ArcFace; where theta + m would pass pi, InsightFace's c - m sin m
        f = torch.where(c > -math.cos(a.margin_m), torch.cos(theta + a.margin_m), c - a.margin_m * math.sin(a.margin_m))
    return a.margin_s * cos.scatter(1, labels[:, None], f)


def learning_rate(step, total, a):
    """engine/lr_schedule.h: warmup_factor x CosineSchedule (or the plateau rule's constant)."""
    warmup = (step + 1) / a.warmup if step < a.warmup else 1.0
    if a.lr_schedule == "plateau":
        return a.lr * warmup
    return warmup * (a.min_lr + (a.lr - a.min_lr) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def write_atomically(path, write):
    with open(path + ".tmp", "wb") as f:
        write(f)
    os.replace(path + ".tmp", path)


def main(a):
    pixels, identities, _ = read_pack(a.train)
    heldout = read_pack(a.heldout_pack) if a.heldout_pack else None
    if (identities < 0).any():
        fail(f"{a.train}: {int((identities < 0).sum())} records have no identity (the twin trains on labelled ones)")
    steps_per_epoch = len(identities) // a.batch  # drop_last
    total = a.steps if a.steps > 0 else a.epochs * steps_per_epoch
    if steps_per_epoch == 0 or total <= 0:
        fail(f"--train {a.train} holds {len(identities)} images, fewer than one --batch of {a.batch}, or no steps")
    if a.lr_schedule == "plateau" and total > a.patience:
        fail(f"--lr-schedule plateau lowers the rate after --patience {a.patience} steps, which the twin does not "
             f"model; {total} steps need --lr-schedule cosine")
    if os.path.exists(os.path.join(a.out, "loss_debug.csv")):
        fail(f"--out {a.out} holds another run's loss_debug.csv: remove it or choose another folder")
    os.makedirs(a.out, exist_ok=True)
    write_atomically(os.path.join(a.out, "config.json"), lambda f: f.write(json.dumps(vars(a), indent=1).encode()))

    torch.manual_seed(a.seed)
    classes = int(identities.max()) + 1
    model = FaceModel(a, classes)
    decayed_fr = [model.embedding[1].weight, model.fr.weight]
    decayed_backbone = [p for p in model.parameters() if p.ndim == 4]  # the convolutions
    undecayed = [p for p in model.parameters() if p.ndim == 1 and p.requires_grad]  # BN and biases
    optimizer = torch.optim.SGD([{"params": decayed_backbone, "weight_decay": a.wd_backbone},
                                 {"params": decayed_fr, "weight_decay": a.wd_fr},
                                 {"params": undecayed, "weight_decay": 0.0}], lr=a.lr, momentum=a.momentum)
    generator = torch.Generator().manual_seed(a.seed)
    print(f"pytorch_recipe: {len(identities)} images of {classes} people, {a.arch} at {a.input_size} px, "
          f"{total} steps of {a.batch}, {a.margin} s {a.margin_s} m {a.margin_m}, {a.threads} threads")

    log = open(os.path.join(a.out, "loss_debug.csv"), "w")
    log.write("step,epoch,lr,loss,loss_fr,loss_gender,loss_age,accuracy_fr,accuracy_gender,accuracy_age,images_per_s\n")
    model.train()
    losses, accuracies, start, every = [], [], time.perf_counter(), max(1, total // 10)
    for step in range(total):
        epoch, k = divmod(step, steps_per_epoch)
        if k == 0:
            order = torch.randperm(len(identities), generator=generator)
        batch = order[k * a.batch:(k + 1) * a.batch]
        tick = time.perf_counter()
        images = render(pixels[batch], a.input_size, generator, a.flip, a.scale_jitter, a.shift_jitter,
                        a.colour_jitter)
        labels = identities[batch]
        lr = learning_rate(step, total, a)
        for group in optimizer.param_groups:
            group["lr"] = lr
        cos = F.linear(F.normalize(model.embed(images)), F.normalize(model.fr.weight))
        loss = F.cross_entropy(margin_logits(cos, labels, a), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            fail(f"loss is {loss.item()} at step {step}")
        losses.append(loss.item())
        accuracies.append((cos.argmax(1) == labels).float().mean().item())  # cosines without margin, as cuface
        log.write(f"{step + 1},{epoch},{lr:g},{loss.item():f},{loss.item():f},,,{accuracies[-1]:f},,,"
                  f"{a.batch / (time.perf_counter() - tick):f}\n")
        if (step + 1) % every == 0 or step + 1 == total:
            elapsed = time.perf_counter() - start
            eta = elapsed / (step + 1) * (total - step - 1)
            print(f"step {step + 1}/{total} epoch {epoch} lr {lr:.3g} loss {np.mean(losses[-every:]):.4f} "
                  f"acc {np.mean(accuracies[-every:]):.3f} | {(step + 1) * a.batch / elapsed:.1f} img/s, "
                  f"ETA {eta:.0f} s", flush=True)
    log.close()
    seconds = time.perf_counter() - start
    head, tail = np.mean(losses[:10]), np.mean(losses[-10:])
    summary = (f"pytorch_recipe: {total} steps in {seconds:.0f} s ({total * a.batch / seconds:.0f} img/s), "
               f"loss {head:.4f} -> {tail:.4f} (means of the first and last 10 steps)")
    if heldout:
        model.eval()
        with torch.no_grad():
            rows = [model.embed(render(heldout[0][i:i + 256], a.input_size)) for i in range(0, len(heldout[2]), 256)]
        npy = os.path.join(a.out, "embeddings.npy")
        write_atomically(npy, lambda f: np.save(f, torch.cat(rows).numpy().astype(np.float32)))
        write_atomically(os.path.join(a.out, "embeddings.txt"), lambda f: f.write("".join(
            s + "\n" for s in heldout[2]).encode()))
        summary += f"; {len(heldout[2])} held-out images embedded in {npy}"
    print(summary + f"; run in {a.out}")


if __name__ == "__main__":
    main(ARGS)
