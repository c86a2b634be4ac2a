"""Profile: which oneDNN kernels a training step runs, and how long each kind takes.

    python bench/onednn_profile.py [--policy mixed_bfloat16] [--seed-config] [--steps 3]
                                   [--by-shape]

Trains the model params.yaml describes (or, with --seed-config, the seed's exact one: width 1.0,
257 px, batch 100) for a few steps on random images in a child process with ONEDNN_VERBOSE=1,
and sums oneDNN's log of the last `--steps` steps by primitive kind, pass and implementation:
how many times per step each runs and the milliseconds it takes (--by-shape: a row per layer,
named by its channels in and out). `reorder` lines are layout or dtype conversions around the
real work; implementations with `avx512_core_bf16` or `avx512_core_amx` in their name are the
bfloat16 and AMX kernels. The CPU and its flags are printed first. It asserts nothing;
TensorFlow must use oneDNN (its default on x86 Linux).
"""

import argparse
import collections
import os
import subprocess
import sys
from pathlib import Path

from machine import describe, summary

ROOT = Path(__file__).resolve().parents[1]
MARK = "blastcell-profile-step"  # printed by the child between steps


CHILD = """
import sys, numpy as np
sys.path.insert(0, {bench!r})
from train_throughput import SEED_CONFIG
from blastcell import model, train
from blastcell.params import load
from blastcell.tf import keras, tf
config = load({params!r}, SEED_CONFIG if {seed} else [])
keras.mixed_precision.set_global_policy({policy!r})
size, bs = config.prepare.image_size, config.train.batch_size
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (bs, size, size, 3), dtype=np.uint8)
y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, bs)]
net = model.build(config.model, size, 2)
train.compile_model(net, 2, config.train, 1)
for step in range({steps} + 2):  # two warm-up steps
    print({mark!r}, step, flush=True)
    net.train_on_batch(x, y)
print({mark!r}, "end", flush=True)
"""


def profile(policy: str, seed_config: bool, steps: int, params: Path, by_shape: bool) -> dict:
    """{(kind and pass, implementation): [calls per step, ms per step]} over the last `steps`
    steps."""
    code = CHILD.format(
        bench=str(ROOT / "bench"), params=str(params), seed=seed_config, policy=policy,
        steps=steps, mark=MARK,
    )  # fmt: skip
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    totals: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    counting = False
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            counting = line.split()[1] not in ("0", "1", "end")  # after the warm-up steps
            continue
        fields = line.split(",")
        if not counting or not line.startswith("onednn_verbose") or "exec" not in fields:
            continue
        at = fields.index("exec")
        kind, impl, pass_ = fields[at + 2], fields[at + 3], fields[at + 4]
        kind = f"{kind} {pass_.replace('forward_training', 'forward')}".strip()
        if by_shape:  # oneDNN's problem descriptor, e.g. mb100_ic3oc256_ih257oh129kh3sh2...
            impl = f"{impl.split(':')[0]} {fields[-2].split('_')[1] if '_' in fields[-2] else ''}"
        totals[(kind, impl)][0] += 1 / steps
        totals[(kind, impl)][1] += float(fields[-1]) / steps
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="mixed_bfloat16", help="Keras dtype policy")
    parser.add_argument("--seed-config", action="store_true", help="width 1.0, 257 px, batch 100")
    parser.add_argument("--steps", type=int, default=3, help="steps counted, after 2 warm-up")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--by-shape", action="store_true", help="one row per layer shape")
    args = parser.parse_args()
    print(summary(describe(gpu=False)))
    rows = profile(args.policy, args.seed_config, args.steps, args.params, args.by_shape)
    total = sum(ms for _, ms in rows.values())
    print(f"{'primitive, pass':<34} {'implementation':<40} {'calls':>5} {'ms':>7} {'share':>6}")
    for (kind, impl), (calls, ms) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        share = 100 * ms / total if total else 0.0
        print(f"{kind:<34} {impl[:40]:<40} {calls:>5.0f} {ms:>7.1f} {share:>5.1f}%")
    print(f"{'all, per step':<75} {sum(c for c, _ in rows.values()):>5.0f} {total:>7.1f}")


if __name__ == "__main__":
    main()
