"""Where training time goes: TensorFlow's profiler over one epoch of the pipeline's loop for one
model, each op on one thread as crossvalidate trains, against the float32 matmul speed of one
thread measured in the same process.

    python bench/profile_ops.py [--images 9600] [--section cv] [--out profile.json]
    python bench/profile_ops.py --tiny --out F.json     # a few hundred images: checks this script

It prints each op type's share of the busy time, and how fast the convolutions run, which is
what bounds the whole pipeline: if they run close to one thread's matmul speed, there is little
left for the training loop to gain without changing the maths.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import bench  # noqa: E402  (puts src/ and tests/ on the path too)


def op_times(logdir: str) -> collections.Counter:
    """Seconds per op type on TensorFlow's compute threads, from the profiler's trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    [trace] = Path(logdir).rglob("*.xplane.pb")
    space = xplane_pb2.XSpace.FromString(trace.read_bytes())
    seconds: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if plane.name != "/host:CPU" or not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and not name.startswith("Executor"):  # "<graph path>:<op type>"
                    seconds[re.sub(r"^_Mkl(Native)?", "", name.rsplit(":", 1)[1])] += event.duration_ps / 1e12
    return seconds


def conv_flops_per_image(model) -> float:
    """The convolutions' forward FLOPs three times over (forward, input and weight gradients),
    but twice for the first, whose input gradient nobody needs."""
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    return sum((2 if i == 0 else 3) * bench.forward_flops(layer) for i, layer in enumerate(convs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=9600, help="training images in the profiled epoch")
    parser.add_argument("--section", choices=["cv", "train"], default="cv", help="params.yaml section for batch size and optimizer")
    args = bench.parse_args(parser)
    if args.tiny:
        args.images = 512

    import tensorflow as tf
    from helpers import MIRROR

    from mnist_pipeline import mnist, params, training

    training.one_thread_per_op()
    p = params.load(bench.ROOT / "params.yaml")
    setup = getattr(p, args.section)
    data = mnist.load_split(MIRROR, "train")
    job = training.prepare(
        p.model,
        training.to_tensors(data.images, data.labels),
        np.arange(args.images),
        batch_size=setup.batch_size,
        optimizer=setup.optimizer,
        learning_rate=setup.learning_rate,
        seed=0,
    )
    training.train(job, 1, label="warm-up")
    matmul = bench.matmul_flops_per_second(256 if args.tiny else 2048)  # one thread, like every op here
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        job.model.fit(job.epoch(1), verbose=0)
        tf.profiler.experimental.stop()
        seconds = op_times(logdir)

    busy = sum(seconds.values())
    conv = sum(s for op, s in seconds.items() if "Conv2D" in op)
    conv_speed = conv_flops_per_image(job.model) * args.images / conv
    print(f"\n| op (batch {setup.batch_size}, {args.images:,} images, one thread per op) | seconds | share of busy time |")
    print("|---|---|---|")
    for op, s in seconds.most_common(12):
        print(f"| {op} | {s:.3f} | {s / busy:.1%} |")
    print(f"| all ops | {busy:.3f} | 100% |\n")
    print(
        f"Convolutions: {conv / busy:.0%} of the busy time at {conv_speed / 1e9:.0f} GFLOP/s, "
        f"{conv_speed / matmul:.0%} of one thread's float32 matmul ({matmul / 1e9:.0f} GFLOP/s)."
    )
    if args.out:
        results = {
            "batch_size": setup.batch_size,
            "images": args.images,
            "op_seconds": dict(seconds.most_common()),
            "conv_share": conv / busy,
            "conv_flops_per_s": conv_speed,
            "matmul_flops_per_s": matmul,
        }
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
