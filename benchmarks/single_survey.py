"""Raw-feature false alarms on no-shift NEW surveys, by how many surveys the reference profile holds.

    python benchmarks/single_survey.py [--first-seed 100] [--new 4] [--widening 1 4]

Reference: 4,000 uniform windows of the test block (the last inline block, where the training profile takes
them) of survey seed 0 alone, the default ``data.survey.seed: 0``, or 1,000 of each of seeds 0-3; calibration
groups are the (survey, inline) pairs of ``seismic.monitoring.job.load_reference``. Current windows: 2,000
uniform windows from each inline half of ``--new`` new seeds: no shift, and the same x1.3 and x2 in gain (what
the widening costs). Prints, per reference and ``calibration.single_survey_widening``, the share of windows
the raw features flag and the features that flag most.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np

from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.data.windows import SplitSpec, WindowSpec, extract_windows, sample_centres
from seismic.features import FEATURE_NAMES, window_features
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.detector import compare, fit_baseline
from seismic.monitoring.job.run import _calibration_groups

GEOLOGY = {"n_inlines": 128, "n_crosslines": 96, "n_samples": 640, "dt_ms": 4.0}  # data/synthetic.yaml
SPEC = WindowSpec(length=64)
GAINS = (1.0, 1.3, 2.0)


def windows(seed: int, n: int, inlines: tuple[int, int], gains=(1.0,)) -> tuple[list[np.ndarray], np.ndarray]:
    """Features of ``n`` uniform windows of inlines ``[lo, hi)`` of survey ``seed``, per gain; the inlines."""
    s = generate_survey(SyntheticSurveyConfig(**GEOLOGY, seed=seed))
    il, xl, t = sample_centres(s.labels[inlines[0] : inlines[1]], n, SPEC, balance=False, seed=seed)
    w = extract_windows(s.amplitudes, il + inlines[0], xl, t, SPEC)
    return [window_features(w * np.float32(g), GEOLOGY["dt_ms"]) for g in gains], il + inlines[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--new", type=int, default=4)
    parser.add_argument("--widening", type=float, nargs="+", default=[1.0, 4.0])
    args = parser.parse_args()
    test = SplitSpec().blocks(GEOLOGY["n_inlines"])["test"]
    refs = {seed: windows(seed, 4000, test) for seed in range(4)}
    half, seeds = GEOLOGY["n_inlines"] // 2, range(args.first_seed, args.first_seed + args.new)
    current = [windows(s, 2000, part, GAINS)[0] for s in seeds for part in ((0, half), (half, 2 * half))]
    for surveys in ([0], [0, 1, 2, 3]):
        per = 4000 // len(surveys)
        f = np.concatenate([refs[s][0][0][:per] for s in surveys])
        groups, _ = _calibration_groups(
            np.repeat(np.arange(len(surveys)), per), np.concatenate([refs[s][1][:per] for s in surveys])
        )
        for widening in args.widening if len(surveys) == 1 else [1.0]:
            config = DriftConfig.from_mapping({"calibration": {"single_survey_widening": widening}})
            b = fit_baseline(
                config, features=f, feature_names=FEATURE_NAMES, groups=groups, n_surveys=len(surveys)
            )
            for g, gain in enumerate(GAINS):
                which = collections.Counter()
                flagged = 0
                for cur in current:
                    names = [d.name for d in compare(b, features=cur[g]).features if d.drifted]
                    flagged += bool(names)
                    which.update(names)
                print(
                    f"reference {len(surveys)} survey(s), widening {widening:g}, gain x{gain:g}: {flagged} "
                    f"of {len(current)} windows flagged; most: {dict(which.most_common(4))}",
                    flush=True,
                )


if __name__ == "__main__":
    import record

    record.run(main, "single_survey", title="Single-survey references")
