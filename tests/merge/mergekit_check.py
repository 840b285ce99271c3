"""Merge the same small models with the same recipes in mergekit and in `mobilellm merge`; compare.

Usage (run by tests/cli/merge_mergekit.sh with the venv's python):
    mergekit_check.py MOBILELLM WORKDIR
WORKDIR holds hf0..hf3 (float32 HF directories), hf1b (hf1 in bfloat16) and m0.h5..m3.h5 (the same
models as native checkpoints). Deterministic methods must agree to float32 rounding; DARE (random)
is checked for its kept fraction and L1 rescaling in both implementations.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

M, W = sys.argv[1], sys.argv[2]
MERGEKIT = os.path.join(os.path.dirname(sys.executable), "mergekit-yaml")
os.chdir(W)
failures = []

RECIPES = {
    "linear": """
merge_method: linear
models:
  - model: {hf1}
    parameters: {{weight: 0.7}}
  - model: {hf2}
    parameters: {{weight: [0.1, 0.9]}}
  - model: {hf3}
    parameters: {{weight: [{{filter: self_attn, value: 0.5}}, {{value: 0.2}}]}}
dtype: float32
""",
    "linear_nonorm_bf16": """
merge_method: linear
models:
  - model: {hf1b}
    parameters: {{weight: 0.5}}
  - model: {hf2}
    parameters: {{weight: 0.25}}
parameters: {{normalize: false}}
dtype: float32
""",
    "task_arithmetic": """
merge_method: task_arithmetic
base_model: {hf0}
models:
  - model: {hf1}
    parameters: {{weight: [0.2, 1.0, 0.4]}}
  - model: {hf2}
    parameters: {{weight: 0.5}}
parameters: {{lambda: 0.8}}
dtype: float32
""",
    "ties": """
merge_method: ties
base_model: {hf0}
models:
  - model: {hf1}
    parameters: {{weight: 0.6, density: [0.2, 0.9]}}
  - model: {hf2}
    parameters:
      weight: [{{filter: mlp, value: 0.3}}, {{value: 0.5}}]
      density: 0.5
  - model: {hf3}
    parameters: {{weight: 0.4, density: [{{filter: embed, value: 0.7}}, {{value: 0.3}}]}}
parameters: {{normalize: true, int8_mask: true}}
dtype: float32
""",
    "ties_nonorm": """
merge_method: ties
base_model: {hf0}
models:
  - model: {hf1}
    parameters: {{weight: 1.0, density: 0.3}}
  - model: {hf2}
    parameters: {{weight: -0.5, density: 0.6}}
parameters: {{normalize: false, lambda: 1.5}}
dtype: float32
""",
    "breadcrumbs": """
merge_method: breadcrumbs
base_model: {hf0}
models:
  - model: {hf1}
    parameters: {{weight: 0.5, density: 0.7, gamma: 0.05}}
  - model: {hf2}
    parameters: {{weight: 0.5, density: 0.4}}
dtype: float32
""",
    "breadcrumbs_ties": """
merge_method: breadcrumbs_ties
base_model: {hf0}
models:
  - model: {hf1}
    parameters: {{weight: 0.7, density: 0.8, gamma: [0.01, 0.1]}}
  - model: {hf2}
    parameters: {{weight: 0.3, density: 0.5, gamma: 0.02}}
  - model: {hf3}
    parameters: {{weight: 0.5, density: 0.9}}
parameters: {{normalize: true}}
dtype: float32
""",
    "slerp": """
merge_method: slerp
base_model: {hf0}
models:
  - model: {hf0}
  - model: {hf1}
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.4
dtype: float32
""",
    "slerp_slices": """
slices:
  - sources:
      - model: {hf0}
        layer_range: [0, 4]
      - model: {hf2}
        layer_range: [0, 4]
merge_method: slerp
base_model: {hf0}
parameters:
  t: [0.1, 0.9]
dtype: float32
""",
    "linear_slices": """
slices:
  - sources:
      - model: {hf1}
        layer_range: [0, 2]
        parameters: {{weight: [1.0, 0.0]}}
      - model: {hf2}
        layer_range: [2, 4]
        parameters: {{weight: 0.5}}
  - sources:
      - model: {hf3}
        layer_range: [1, 4]
        parameters: {{weight: 0.3}}
      - model: {hf1}
        layer_range: [0, 3]
    parameters: {{weight: [0.2, 0.6]}}
merge_method: linear
dtype: float32
""",
}

HF = {"hf0": "hf0", "hf1": "hf1", "hf2": "hf2", "hf3": "hf3", "hf1b": "hf1b"}
# ours reads some of the same models from native checkpoints: mixed inputs in one recipe
OURS = {"hf0": "m0.h5", "hf1": "hf1", "hf2": "m2.h5", "hf3": "hf3", "hf1b": "hf1b"}


def run(cmd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")


def mergekit(name, text):
    with open(f"{name}.mk.yaml", "w") as f:
        f.write(text.format(**HF))
    shutil.rmtree(f"{name}.mk", ignore_errors=True)
    run([MERGEKIT, f"{name}.mk.yaml", f"{name}.mk", "--no-copy-tokenizer", "--no-write-model-card", "--allow-crimes"])
    return load_file(f"{name}.mk/model.safetensors")


def ours(name, text, mapping=OURS, seed=None):
    with open(f"{name}.ml.yaml", "w") as f:
        f.write(text.format(**mapping))
    shutil.rmtree(f"{name}.ml", ignore_errors=True)
    cmd = [M, "merge", "--config", f"{name}.ml.yaml", "--out", f"{name}.ml", "--format", "hf", "--quiet"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    run(cmd)
    return load_file(f"{name}.ml/model.safetensors")


for name, text in RECIPES.items():
    try:
        a, b = mergekit(name, text), ours(name, text)
    except RuntimeError as e:
        failures.append(f"{name}: {e}")
        print(f"FAIL {name}: {e}")
        continue
    missing = sorted(set(b) - set(a)) + sorted(k for k in a if k not in b and k != "lm_head.weight")
    worst, where, bad = 0.0, "", 0
    for k in b:
        if k not in a:
            continue
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        if x.shape != y.shape:
            missing.append(f"{k} shape {x.shape} vs {y.shape}")
            continue
        err = np.abs(x - y) / (np.abs(x) + 1e-3)
        if err.max() > worst:
            worst, where = float(err.max()), k
        bad += int((err > 1e-4).sum())
    ok = not missing and bad == 0
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(b)} tensors, max rel diff {worst:.2e} ({where}), "
          f"{bad} elements off by > 1e-4{'; name mismatch: ' + str(missing[:4]) if missing else ''}")
    if not ok:
        failures.append(name)

# DARE: random, so compare what the randomness must preserve. With one model of weight 1 and no
# normalization, out - base is the sparsified delta: kept fraction ~ density, and mergekit's
# rescale keeps the delta's L1 norm per tensor.
base = load_file("hf0/model.safetensors")
delta = {k: load_file("hf1/model.safetensors")[k].astype(np.float64) - base[k] for k in base}
for method in ("dare_linear", "dare_ties"):
    for rescale in (True, False):
        text = f"""
merge_method: {method}
base_model: {{hf0}}
models:
  - model: {{hf1}}
    parameters: {{{{weight: 1.0, density: 0.3}}}}
parameters: {{{{rescale: {str(rescale).lower()}}}}}
dtype: float32
"""
        name = f"{method}_{'rescale' if rescale else 'norescale'}"
        try:
            outs = {"mergekit": mergekit(name, text), "mobilellm": ours(name, text, seed=7)}
            again = ours(name + "_again", text, seed=7)
            other = ours(name + "_seed8", text, seed=8)
        except RuntimeError as e:
            failures.append(f"{name}: {e}")
            print(f"FAIL {name}: {e}")
            continue
        big = [k for k in base if base[k].size >= 4096]
        for who, out in outs.items():
            kept = sum(int((out[k].astype(np.float64) - base[k] != 0).sum()) for k in big) / sum(base[k].size for k in big)
            l1_ratio = [np.abs(out[k].astype(np.float64) - base[k]).sum() / np.abs(delta[k]).sum() for k in big]
            ok = abs(kept - 0.3) < 0.01
            if rescale:
                ok &= max(abs(r - 1) for r in l1_ratio) < 1e-3
            else:
                ok &= max(abs(r - 0.3) for r in l1_ratio) < 0.03
                # kept values are the deltas themselves
                k0 = big[0]
                d = out[k0].astype(np.float64) - base[k0]
                nz = d != 0
                ok &= np.allclose(d[nz], delta[k0][nz], rtol=1e-5, atol=1e-7)
            print(f"{'ok  ' if ok else 'FAIL'} {name} ({who}): kept {kept:.4f} (density 0.3), "
                  f"L1 ratio {min(l1_ratio):.4f}..{max(l1_ratio):.4f} ({'rescaled: 1' if rescale else 'not rescaled: ~0.3'})")
            if not ok:
                failures.append(f"{name} ({who})")
        same = all(np.array_equal(outs["mobilellm"][k], again[k]) for k in again)
        differs = any(not np.array_equal(outs["mobilellm"][k], other[k]) for k in big)
        print(f"{'ok  ' if same and differs else 'FAIL'} {name}: same seed reproduces, another seed differs")
        if not (same and differs):
            failures.append(f"{name} reproducibility")

if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("all mergekit comparisons passed")
