"""MNIST's own stroke widths, as imaging.to_mnist measures them: the source of imaging.MNIST_STROKE.
Writes bench/stroke_widths_results.json and prints one line.

python bench/stroke_widths.py [N]     # N training digits (default 5000); needs `dvc repro` for data/prepared
python bench/stroke_widths.py --tiny --out F.json     # 200 digits: checks this script
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bench import parse_args  # noqa: E402
from mnist_pipeline import imaging  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=5000, help="training digits to measure")
    args = parse_args(parser, "stroke_widths_results.json")
    n = 200 if args.tiny else args.n
    digits = np.load("data/prepared/train_images.npy", mmap_mode="r")[:n, ..., 0]
    widths = np.array([imaging.box_stroke_width(np.asarray(d)) for d in digits])
    low, median, high = np.percentile(widths, [1, 50, 99])
    outside = np.mean((widths < imaging.MNIST_STROKE[0]) | (widths > imaging.MNIST_STROKE[2]))
    print(
        f"{n} MNIST training digits: stroke width 1st percentile {low:.2f}, median {median:.2f}, 99th {high:.2f} px; "
        f"{outside:.2%} outside imaging.MNIST_STROKE = {imaging.MNIST_STROKE}"
    )
    args.out.write_text(json.dumps({"n": n, "percentiles": {"1": low, "50": median, "99": high}, "outside": outside}, indent=2) + "\n")
