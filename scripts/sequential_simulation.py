"""The simulation table of docs/science.md "Seeded comparisons that decide": the false-positive
rate of the group-sequential paired t-test (vat_study.platform.group_sequential) and the seeds it uses, for
min 3, max 20, batch 2, alpha 0.05. No training; about a minute on a 2-core CPU.

    python scripts/sequential_simulation.py
"""

import numpy as np

from vat_study.platform.group_sequential import NO_DIFFERENCE, Design, _t_pvalues, decide, nominal_level, peeking_rate


def main() -> None:
    design = Design(3, 20, 2, 0.05)
    level = nominal_level(design)
    print(f"looks {design.looks}; nominal level per look alpha' = {level:.4f}")
    for seed in (11, 12):
        d = np.random.default_rng(seed).standard_normal((40_000, design.max_seeds))
        print(f"false-positive rate, 40,000 normal studies (seed {seed}): {(_t_pvalues(d, design.looks).min(1) < level).mean():.3f}")
    rng = np.random.default_rng(2025)
    fp = np.mean([decide(rng.standard_normal(20), design).state != NO_DIFFERENCE for _ in range(2000)])
    print(f"false-positive rate, 2,000 normal studies: {fp:.3f}")
    rng = np.random.default_rng(7)
    fp = np.mean([decide(rng.standard_t(3, 20), design).state != NO_DIFFERENCE for _ in range(2000)])
    print(f"false-positive rate, 2,000 studies with t(3) differences: {fp:.3f}")
    print(f"false-positive rate of a plain t-test at every look: {peeking_rate(design):.3f}")
    rng = np.random.default_rng(3)
    print("effect (SDs)  decided  mean seeds  stopped at min")
    for effect in (30, 10, 3, 1, 0.8, 0.5):
        outs = [decide(effect + rng.standard_normal(20), design) for _ in range(1000)]
        print(f"{effect:>12}  {np.mean([o.state != NO_DIFFERENCE for o in outs]):7.2f}  "
              f"{np.mean([o.n for o in outs]):10.1f}  {np.mean([o.n == 3 for o in outs]):14.0%}")


if __name__ == "__main__":
    main()
