"""New digits from raw 8x8 digits: do `fitted.sample` images look like digits (issue 22's protocol)?

    python benchmarks/digits.py        # writes benchmarks/results/digits.{md,json}

scikit-learn's digits (1797 images, 64 raw pixel columns, 0..16, three or more constant pixels): a seeded split
into 1500 training and 297 held-out images; `disco_plug.load().fit(train)` on the raw columns (with and without
`dequantize=True`), then `fitted.sample(500)`. A logistic regression (standardized pixels) trained on the real
training images labels the draws: mean confidence (its largest class probability), class entropy of the labels
relative to log 10, and the mean distance of each draw to its nearest training image over that of the held-out
real images (1: as far as new real digits; well below 1: copies; well above: noise). The same numbers for
held-out real images and for scikit-learn GaussianMixture samples (full covariance, K by BIC over 1..10).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import disco_plug  # noqa: E402
from disco_plug.bench import git_commit  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
SEED, N_TRAIN, N_DRAWS = 0, 1500, 500


def scores(images: np.ndarray, classifier, train: np.ndarray, held_out_nn: float | None) -> dict:
    proba = classifier.predict_proba(images)
    counts = np.bincount(proba.argmax(1), minlength=10) / len(images)
    entropy = float(-(counts[counts > 0] * np.log(counts[counts > 0])).sum() / np.log(10))
    nn = float(np.sqrt(((images[:, None, :] - train[None]) ** 2).sum(-1)).min(1).mean())
    return {"confidence": float(proba.max(1).mean()), "class_entropy": entropy, "nn_distance": nn,
            "nn_ratio": nn / held_out_nn if held_out_nn else 1.0,
            "range": [float(images.min()), float(images.max())]}


def main() -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_digits()
    perm = np.random.default_rng(SEED).permutation(len(data.data))
    train, test = data.data[perm[:N_TRAIN]], data.data[perm[N_TRAIN:]]
    labels = data.target[perm[:N_TRAIN]]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train, labels)
    real = scores(test, classifier, train, None)
    rows = {"held-out real digits": real}
    estimator = disco_plug.load()
    for dequantize in (False, True):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the constant and grid-valued pixels, expected here
            fitted = estimator.fit(train, dequantize=dequantize)
        draws = fitted.sample(N_DRAWS, generator=torch.Generator().manual_seed(SEED + 1))
        row = scores(draws, classifier, train, real["nn_distance"])
        row["seconds"] = time.perf_counter() - t0
        row["weights"] = [round(float(w), 4) for w in fitted.density.weights[0]]
        rows[f"disco_plug{' (dequantize=True)' if dequantize else ''}"] = row
    best = min((GaussianMixture(k, random_state=SEED).fit(train) for k in range(1, 11)), key=lambda g: g.bic(train))
    rows[f"GaussianMixture-BIC (K={best.n_components})"] = scores(best.sample(N_DRAWS)[0], classifier, train,
                                                                  real["nn_distance"])
    report = {"command": "python benchmarks/digits.py", "commit": git_commit(ROOT),
              "machine": f"{platform.machine()}, torch {torch.__version__}",
              "load": " ".join(f"{v:.2f}" for v in os.getloadavg()), "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "digits.json").write_text(json.dumps(report, indent=1))
    lines = ["# New digits from raw 8x8 digits", "", f"Command: `{report['command']}`  ", f"Commit: `{report['commit']}`  ",
             f"Machine: {report['machine']}; load average {report['load']}", "",
             "Protocol: the module docstring of benchmarks/digits.py (1500 training images, 500 draws; targets of "
             "issue 22: confidence >= 0.93, class entropy >= 0.9, nearest-training distance 0.7-1.3x real).", "",
             "| images | mean confidence | class entropy / log 10 | nearest-training distance / real | pixel range |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['confidence']:.3f} | {r['class_entropy']:.3f} | {r['nn_ratio']:.2f} | "
                     f"{r['range'][0]:.1f}..{r['range'][1]:.1f} |")
    (OUT / "digits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
