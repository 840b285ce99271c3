#!/usr/bin/python3
"""Self-checks of the PyTorch reference (mobilellm_torch.py, golden.py).

    /usr/bin/python3 tests/reference/test_reference.py [-v] [TestClass[.test_name] ...]

Exits non-zero on failure. Registered as a ctest by tests/cli/torch_reference.sh.
What is checked:
  * safetensors writer/reader round trips (F32, F16, BF16, I32, I64), header rules, damaged files;
  * config parsing for every dialect, parameter names and counts (MobileLLM-125M = 124,635,456);
  * agreement with Hugging Face transformers 5.17 logits (fixtures/hf, made by make_hf_fixtures.py)
    for llama (half-split RoPE, tied), llama4_text (adjacent RoPE, QK-norm, a NoPE layer, feed_forward
    names) and ministral (per-layer sliding windows, untied, default layer_types);
  * float64 gradcheck of the loss with respect to every parameter, one tiny model per variant;
  * semantics: sliding window and document mask change outputs and equal their brute-force
    definitions, layer_repeat equals duplicated layers, adjacent RoPE equals half-split RoPE with
    permuted q/k rows, RoPE depends on relative positions only, QK-norm scale invariance;
  * golden.py end to end: output tensors, losses[0] == loss, gradients, one AdamW step by hand,
    bad input (one-line error, exit 2, no output file);
  * the real checkpoint ../shared/teachers/mobilellm-28m-llama2tok (skipped when absent): loads from
    its index and bf16 shards and scores TinyStories validation text far below ln(32000).
"""

import contextlib
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from torch.nn.utils.stateless import functional_call

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import golden  # noqa: E402
import mobilellm_torch as ref  # noqa: E402
from mobilellm_torch import MobileLLM, MobileLLMConfig, RefInputError  # noqa: E402

FIXTURES = os.path.join(HERE, "fixtures", "hf")
SHARED = os.environ.get("ML_SHARED_DIR", os.path.join(HERE, "..", "..", "..", "shared"))
TEACHER = os.path.join(SHARED, "teachers", "mobilellm-28m-llama2tok")
# With ML_REQUIRE_SHARED=1 a missing shared file fails instead of skipping.
REQUIRE_SHARED = os.environ.get("ML_REQUIRE_SHARED", "") not in ("", "0")

torch.set_num_threads(1)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def tiny(dialect="llama", **kw):
    """A tiny HF-style config dict (GQA 2:1, head_dim 4)."""
    d = {"model_type": dialect, "vocab_size": 11, "hidden_size": 8, "intermediate_size": 6,
         "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}
    if dialect == "llama4_text":
        d.update(intermediate_size_mlp=6, use_qk_norm=True, no_rope_layers=[1, 1],
                 attn_temperature_tuning=False)
    d.update(kw)
    return d


def build(d, seed=0, std=0.5, dtype=torch.float32):
    """Model from a config dict with large random weights (so outputs depend visibly on them)."""
    cfg = MobileLLMConfig.from_hf_dict(d)
    m = MobileLLM(cfg)
    ref.init_weights(m, seed=seed, std=std)
    with torch.no_grad():  # norms away from 1 so that their gradients matter
        g = torch.Generator().manual_seed(seed + 1)
        for _, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m.to(dtype)


def rand_tokens(B, T, V, seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


class SafetensorsTests(unittest.TestCase):
    def test_round_trip(self):
        rng = np.random.default_rng(0)
        bf = np.array([1.0, -2.5, 0.0078125, 2.0**100, -0.0], dtype=np.float32)  # exact in bf16
        tensors = {"a.f32": rng.standard_normal((3, 5)).astype(np.float32),
                   "b.f16": rng.standard_normal(7).astype(np.float16),
                   "c.i32": np.arange(-3, 9, dtype=np.int32).reshape(3, 4),
                   "d.i64": np.array([2**40, -1], dtype=np.int64),
                   "e.bf16": bf, "f.empty": np.zeros((0, 4), dtype=np.float32),
                   "g.scalar": np.array(1.5, dtype=np.float32)}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.safetensors")
            ref.write_safetensors(path, tensors, metadata={"k": "v"}, bf16=("e.bf16",))
            self.assertEqual(os.listdir(tmp), ["t.safetensors"])  # no temp file left behind
            raw = read_bytes(path)
            (n,) = struct.unpack("<Q", raw[:8])
            self.assertEqual(n % 8, 0)
            self.assertEqual(raw[8:9], b"{")
            header = json.loads(raw[8:8 + n])
            self.assertEqual(header["__metadata__"], {"format": "pt", "k": "v"})
            self.assertEqual(header["e.bf16"]["dtype"], "BF16")
            self.assertEqual(header["b.f16"]["dtype"], "F16")
            self.assertEqual(header["g.scalar"]["shape"], [])
            ends = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
            self.assertEqual(ends[0][0], 0)
            for (_, e), (b, _) in zip(ends, ends[1:]):
                self.assertEqual(e, b)
            self.assertEqual(8 + n + ends[-1][1], len(raw))
            back, meta = ref.read_safetensors(path, to_float32=False)
            self.assertEqual(meta["format"], "pt")
            self.assertEqual(sorted(back), sorted(tensors))
            for k, a in tensors.items():
                self.assertEqual(back[k].shape, a.shape, k)
                np.testing.assert_array_equal(back[k], a, err_msg=k)
            self.assertEqual(back["c.i32"].dtype, np.int32)
            self.assertEqual(back["b.f16"].dtype, np.float16)
            self.assertEqual(ref.read_safetensors(path)[0]["b.f16"].dtype, np.float32)

    def test_bf16_rounding(self):
        x = np.array([1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-12, np.inf, np.nan], dtype=np.float32)
        bits = ref.f32_to_bf16_bits(x)
        y = ref.bf16_bits_to_f32(bits)
        self.assertEqual(y[0], 1.0)              # tie rounds to even
        self.assertEqual(y[1], 1.0 + 4 * 2**-8)  # tie rounds to even (up)
        self.assertEqual(y[2], 1.0 + 2 * 2**-8)  # above the tie rounds up
        self.assertTrue(np.isinf(y[3]) and np.isnan(y[4]))

    def test_damaged_files_rejected(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.safetensors")
            ref.write_safetensors(path, {"w": np.ones((4, 4), np.float32)})
            raw = read_bytes(path)
            bad = {"truncated": raw[:-3], "short": raw[:5], "huge_header": struct.pack("<Q", 1 << 40) + raw[8:],
                   "not_json": raw[:8] + b"{" + b"x" * (len(raw) - 9),
                   "trailing": raw + b"\0\0\0\0"}
            for what, data in bad.items():
                p = os.path.join(tmp, what)
                write_bytes(p, data)
                with self.assertRaises(RefInputError, msg=what):
                    ref.read_safetensors(p)


class ConfigTests(unittest.TestCase):
    M125 = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}

    def test_param_counts(self):
        self.assertEqual(MobileLLMConfig.from_hf_dict(self.M125).num_params(), 124_635_456)
        pro = dict(self.M125, model_type="ministral", hidden_size=1280, intermediate_size=6144,
                   num_attention_heads=20, num_key_value_heads=4, vocab_size=202048)
        self.assertEqual(MobileLLMConfig.from_hf_dict(pro).num_params(), 1_084_453_120)
        r1 = dict(self.M125, model_type="llama4_text", intermediate_size=8192, intermediate_size_mlp=2048,
                  num_hidden_layers=15, vocab_size=128256, no_rope_layers=[1] * 15)
        self.assertEqual(MobileLLMConfig.from_hf_dict(r1).num_params(), 140_248_512)
        for d in (tiny(), tiny(tie_word_embeddings=False, layer_repeat=3), tiny("llama4_text")):
            m = MobileLLM(MobileLLMConfig.from_hf_dict(d))
            self.assertEqual(sum(p.numel() for p in m.parameters()), m.cfg.num_params())
            self.assertEqual([n for n, _ in m.named_parameters()], m.cfg.param_names())

    def test_tied_has_no_lm_head(self):
        names = dict(MobileLLM(MobileLLMConfig.from_hf_dict(tiny())).named_parameters())
        self.assertNotIn("lm_head.weight", names)
        names = dict(MobileLLM(MobileLLMConfig.from_hf_dict(tiny(tie_word_embeddings=False))).named_parameters())
        self.assertIn("lm_head.weight", names)
        # MobileLLM's hub config: share_embedding (default true) overrides tie_word_embeddings false.
        cfg = MobileLLMConfig.from_hf_dict(tiny("mobilellm", tie_word_embeddings=False))
        self.assertTrue(cfg.tie_word_embeddings)
        cfg = MobileLLMConfig.from_hf_dict(tiny("mobilellm", tie_word_embeddings=False, share_embedding=False))
        self.assertFalse(cfg.tie_word_embeddings)

    def test_dialects(self):
        c = MobileLLMConfig.from_hf_dict(tiny(rope_theta=None, rope_parameters={"rope_type": "default",
                                                                                "rope_theta": 5e5}))
        self.assertEqual(c.rope_theta, 5e5)
        c = MobileLLMConfig.from_hf_dict(tiny(rope_theta=None, rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 7.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 7.0}}))
        self.assertEqual(c.rope_theta, 7.0)
        self.assertEqual(MobileLLMConfig.from_hf_dict(tiny("mobilellm", layer_sharing=True)).layer_repeat, 2)
        self.assertEqual(MobileLLMConfig.from_hf_dict(tiny(layer_sharing=True, layer_repeat=3)).layer_repeat, 3)
        self.assertEqual(MobileLLMConfig.from_hf_dict(tiny()).layer_repeat, 1)
        c = MobileLLMConfig.from_hf_dict(tiny(head_dim=None))
        self.assertEqual(c.head_dim, 4)
        c = MobileLLMConfig.from_hf_dict(tiny("llama4_text", intermediate_size=64, intermediate_size_mlp=6,
                                              no_rope_layers=[1, 0]))
        self.assertEqual((c.intermediate_size, c.rope_pairing, c.use_qk_norm), (6, "adjacent", True))
        self.assertEqual(c.layer_rope, [True, False])
        self.assertIn("model.layers.1.feed_forward.up_proj.weight", c.param_names())
        c = MobileLLMConfig.from_hf_dict(tiny("llama4_text", num_hidden_layers=8, no_rope_layers=None))
        self.assertEqual(c.layer_rope, [True, True, True, False] * 2)  # transformers' default interval 4
        c = MobileLLMConfig.from_hf_dict(tiny("ministral", sliding_window=5))
        self.assertEqual((c.layer_sliding, c.sliding_window), ([True, True], 5))
        c = MobileLLMConfig.from_hf_dict(tiny("ministral", sliding_window=None))
        self.assertEqual(c.layer_sliding, [False, False])
        c = MobileLLMConfig.from_hf_dict(tiny(layer_types=["sliding_attention", "full_attention"], sliding_window=3))
        self.assertEqual((c.layer_sliding, c.sliding_window, c.rope_pairing), ([True, False], 3, "half"))

    def test_bad_configs(self):
        bad = [tiny("gpt2"), tiny(vocab_size=None), tiny(num_key_value_heads=3),
               tiny(rope_scaling={"rope_type": "llama3", "factor": 8.0}),
               tiny(rope_parameters={"rope_type": "yarn", "rope_theta": 1.0}),
               tiny(layer_types=["full_attention"]), tiny(layer_types=["sliding_attention"] * 2),
               tiny(hidden_act="gelu"), tiny(attention_bias=True), tiny(layer_repeat=0),
               tiny("llama4_text", no_rope_layers=[1]), tiny("llama4_text", moe_layers=[0]),
               tiny(head_dim=None, hidden_size=9)]
        for d in bad:
            with self.assertRaises(RefInputError, msg=str(d)):
                MobileLLMConfig.from_hf_dict(d)


class TransformersAgreementTests(unittest.TestCase):
    """Logits of transformers 5.17 (eager, fp32) on tiny random models of each dialect."""

    def check(self, name):
        cfg = MobileLLMConfig.from_json_file(os.path.join(FIXTURES, name + ".json"))
        data, _ = ref.read_safetensors(os.path.join(FIXTURES, name + ".safetensors"), to_float32=False)
        m = MobileLLM(cfg)
        ref.load_weights(m, {k: v for k, v in data.items() if "." in k})
        x = torch.from_numpy(data["tokens"]).long()
        pos = torch.from_numpy(data["pos"]).long()
        with torch.no_grad():
            for logits, want in ((m(x), data["logits"]), (m(x, pos=pos), data["logits_pos"])):
                want = torch.from_numpy(want)
                self.assertGreater(want.abs().max().item(), 1.0)
                err = (logits - want).abs().max().item()
                self.assertLess(err, 5e-5, f"{name}: max |logit difference| {err}")
        return cfg

    def test_llama(self):
        cfg = self.check("llama")
        self.assertEqual((cfg.tie_word_embeddings, cfg.head_dim, cfg.rope_pairing), (True, 16, "half"))

    def test_llama4_text(self):
        cfg = self.check("llama4")
        self.assertEqual((cfg.rope_pairing, cfg.use_qk_norm, cfg.layer_rope, cfg.intermediate_size),
                         ("adjacent", True, [True, False, True], 40))

    def test_ministral(self):
        cfg = self.check("ministral")
        self.assertEqual((cfg.layer_sliding, cfg.sliding_window, cfg.tie_word_embeddings),
                         ([True, False, True], 4, False))
        cfg = self.check("ministral_def")
        self.assertEqual((cfg.layer_sliding, cfg.sliding_window), ([True, True], 3))

    def test_sliding_window_is_what_matches(self):
        """Control: the same weights with full attention do not match transformers."""
        d = json.loads(read_bytes(os.path.join(FIXTURES, "ministral.json")))
        d["layer_types"] = ["full_attention"] * 3
        data, _ = ref.read_safetensors(os.path.join(FIXTURES, "ministral.safetensors"), to_float32=False)
        m = MobileLLM(MobileLLMConfig.from_hf_dict(d))
        ref.load_weights(m, {k: v for k, v in data.items() if "." in k})
        with torch.no_grad():
            err = (m(torch.from_numpy(data["tokens"]).long()) - torch.from_numpy(data["logits"])).abs().max()
        self.assertGreater(err.item(), 1e-2)


VARIANTS = {
    "v1_tied": tiny(),
    "v1_untied_layer_sharing": tiny("mobilellm", share_embedding=False, layer_sharing=True),
    "r1_qknorm_nope": tiny("llama4_text", num_hidden_layers=2, no_rope_layers=[1, 0]),
    "pro_ministral_sliding": tiny("ministral", sliding_window=3,
                                  layer_types=["sliding_attention", "full_attention"]),
    "pro_llama_layer_types": tiny(layer_types=["full_attention", "sliding_attention"], sliding_window=2,
                                  layer_repeat=2),
}


class GradcheckTests(unittest.TestCase):
    """torch.autograd.gradcheck (float64) of the mean loss w.r.t. every parameter."""

    def run_variant(self, d, with_pos_doc, fast, only=None):
        m = build(d, dtype=torch.float64)
        B, T = 2, 7
        x = rand_tokens(B, T, m.cfg.vocab_size, seed=1)
        y = rand_tokens(B, T, m.cfg.vocab_size, seed=2)
        y[0, 0] = -1  # an ignored target
        pos = doc = None
        if with_pos_doc:
            pos = torch.tensor([[0, 1, 2, 0, 1, 2, 3], [5, 6, 7, 8, 9, 10, 11]])
            doc = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [3, 3, 3, 3, 3, 3, 3]])
        names = [n for n, _ in m.named_parameters() if only is None or n.startswith(only)]
        inputs = tuple(m.get_parameter(n).detach().clone().requires_grad_(True) for n in names)

        def loss_fn(*params):  # the other parameters keep their values inside m
            logits = functional_call(m, dict(zip(names, params)), (x, pos, doc))
            return ref.cross_entropy(logits, y)

        self.assertTrue(torch.autograd.gradcheck(loss_fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4,
                                                 fast_mode=fast))

    def test_variants(self):
        """Fast mode: the analytical and numerical Jacobians projected on random directions."""
        for name, d in VARIANTS.items():
            with self.subTest(variant=name):
                self.run_variant(d, with_pos_doc=name.startswith("pro"), fast=True)

    def test_full_jacobian(self):
        """Slow mode (every entry of block 0 perturbed) on a model with most features at once:
        QK-norm, a NoPE layer, layer repeat, a sliding layer, positions and a document mask."""
        d = tiny("llama4_text", no_rope_layers=[1, 0], layer_repeat=2, sliding_window=3,
                 layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=False)
        self.run_variant(d, with_pos_doc=True, fast=False, only="model.layers.0.")


class SemanticsTests(unittest.TestCase):
    def logits(self, m, x, **kw):
        with torch.no_grad():
            return m(x, **kw)

    def assertClose(self, a, b, tol=2e-5):
        self.assertLess((a - b).abs().max().item(), tol)

    def assertDiffer(self, a, b, tol=1e-3):
        self.assertGreater((a - b).abs().max().item(), tol)

    def test_sliding_window(self):
        T, W = 12, 4
        x = rand_tokens(2, T, 11)
        full = self.logits(build(tiny()), x)
        sliding = build(tiny(layer_types=["sliding_attention"] * 2, sliding_window=W))
        self.assertDiffer(self.logits(sliding, x), full)
        # positions up to W-1 only ever see at most W tokens: identical to full attention there
        self.assertClose(self.logits(sliding, x)[:, :W], full[:, :W])
        # a window covering the whole row is full causal attention
        wide = build(tiny(layer_types=["sliding_attention"] * 2, sliding_window=T))
        self.assertClose(self.logits(wide, x), full)
        # brute force with one layer: token t sees exactly tokens t-W+1..t
        one = build(tiny(num_hidden_layers=1, layer_types=["sliding_attention"], sliding_window=W))
        out = self.logits(one, x)
        for t in range(T):
            s = max(0, t - W + 1)
            pos = torch.arange(s, t + 1)[None].expand(2, -1)
            self.assertClose(out[:, t], self.logits(one, x[:, s:t + 1], pos=pos)[:, -1])

    def test_document_mask(self):
        for d in (tiny(), tiny("ministral", sliding_window=3), tiny("llama4_text", layer_repeat=2)):
            m = build(d)
            a, b = rand_tokens(1, 5, 11, seed=3), rand_tokens(1, 7, 11, seed=4)
            x = torch.cat([a, b], 1)
            doc = torch.tensor([[0] * 5 + [1] * 7])
            pos = torch.tensor([list(range(5)) + list(range(7))])
            packed = self.logits(m, x, pos=pos, doc=doc)
            # a packed row with restarting positions and a document mask == separate sequences
            self.assertClose(packed[:, :5], self.logits(m, a))
            self.assertClose(packed[:, 5:], self.logits(m, b))
            self.assertDiffer(packed, self.logits(m, x, pos=pos))  # the mask matters
            same = torch.full_like(doc, 9)
            self.assertClose(self.logits(m, x, doc=same), self.logits(m, x))

    def test_layer_repeat(self):
        x = rand_tokens(2, 9, 11)
        shared = build(tiny(layer_repeat=2, num_hidden_layers=2))
        once = MobileLLM(MobileLLMConfig.from_hf_dict(tiny(num_hidden_layers=2)))
        once.load_state_dict(shared.state_dict())
        self.assertDiffer(self.logits(shared, x), self.logits(once, x))
        # repeat 2 == four distinct layers holding weights [0, 0, 1, 1]
        unrolled = MobileLLM(MobileLLMConfig.from_hf_dict(tiny(num_hidden_layers=4)))
        sd = {}
        for k, v in shared.state_dict().items():
            if k.startswith("model.layers."):
                i, rest = k[len("model.layers."):].split(".", 1)
                for j in (2 * int(i), 2 * int(i) + 1):
                    sd[f"model.layers.{j}.{rest}"] = v
            else:
                sd[k] = v
        unrolled.load_state_dict(sd)
        self.assertClose(self.logits(shared, x), self.logits(unrolled, x))
        # mobilellm layer_sharing: true is the same thing
        ls = MobileLLM(MobileLLMConfig.from_hf_dict(tiny("mobilellm", layer_sharing=True)))
        ls.load_state_dict(shared.state_dict())
        self.assertClose(self.logits(ls, x), self.logits(shared, x))

    def test_rope_pairings(self):
        """Adjacent-pair RoPE with q/k rows permuted (formats.md 1.7: row h*D+2i+j <- h*D+j*D/2+i)
        equals half-split RoPE on the original rows; unpermuted they differ."""
        x = rand_tokens(2, 9, 11)
        half = build(tiny(num_attention_heads=2, num_key_value_heads=1, head_dim=8, hidden_size=8))
        d4 = tiny("llama4_text", head_dim=8, use_qk_norm=False, intermediate_size_mlp=6)
        adj = MobileLLM(MobileLLMConfig.from_hf_dict(d4))
        D = 8
        perm = [j * (D // 2) + i for i in range(D // 2) for j in range(2)]
        sd = {}
        for k, v in half.state_dict().items():
            k4 = k.replace(".mlp.", ".feed_forward.")
            if k.endswith(("q_proj.weight", "k_proj.weight")):
                heads = v.shape[0] // D
                idx = torch.tensor([h * D + p for h in range(heads) for p in perm])
                sd[k4] = v[idx]
            else:
                sd[k4] = v
        adj.load_state_dict(sd)
        self.assertClose(self.logits(adj, x), self.logits(half, x))
        adj.load_state_dict({k.replace(".mlp.", ".feed_forward."): v for k, v in half.state_dict().items()})
        self.assertDiffer(self.logits(adj, x), self.logits(half, x))

    def test_positions(self):
        for d in (tiny(), tiny("llama4_text")):
            m = build(d)
            x = rand_tokens(2, 8, 11)
            base = self.logits(m, x)
            p = torch.arange(8)[None].expand(2, -1)
            self.assertClose(self.logits(m, x, pos=p), base)
            self.assertClose(self.logits(m, x, pos=p + 37), base, tol=1e-4)  # RoPE is relative
            self.assertDiffer(self.logits(m, x, pos=p * 3), base)
        nope = build(tiny("llama4_text", no_rope_layers=[0, 0]))
        self.assertClose(self.logits(nope, x, pos=p * 3), self.logits(nope, x))

    def test_qk_norm(self):
        x = rand_tokens(2, 8, 11)
        m = build(tiny("llama4_text"))
        base = self.logits(m, x)
        with torch.no_grad():
            for layer in m.model.layers:
                layer.self_attn.q_proj.weight.mul_(10.0)
                layer.self_attn.k_proj.weight.mul_(0.3)
        self.assertClose(self.logits(m, x), base, tol=1e-3)  # normalised away (up to eps)
        plain = build(tiny("llama4_text", use_qk_norm=False))
        self.assertDiffer(self.logits(plain, x), base)

    def test_loss_ignores_negative_targets(self):
        logits = torch.randn(2, 5, 11)
        y = torch.randint(0, 11, (2, 5))
        y[0, 1], y[1, 4] = -1, -7
        keep = y.reshape(-1) >= 0
        lp = torch.log_softmax(logits.reshape(-1, 11), -1)[keep]
        want = -lp.gather(1, y.reshape(-1)[keep][:, None]).mean()
        self.assertAlmostEqual(ref.cross_entropy(logits, y).item(), want.item(), places=5)

    def test_load_weights_checks(self):
        m = build(tiny())
        w = ref.state_dict_numpy(m)
        for broken in ({k: v for k, v in w.items() if "norm" not in k},
                       dict(w, **{"model.norm.weight": np.ones(3, np.float32)}),
                       dict(w, **{"lm_head.weight": w["model.embed_tokens.weight"] + 1}),
                       dict(w, **{"model.layers.9.mlp.up_proj.weight": w["model.layers.0.mlp.up_proj.weight"]})):
            with self.assertRaises(RefInputError):
                ref.load_weights(MobileLLM(m.cfg), broken)
        ok = dict(w, **{"lm_head.weight": w["model.embed_tokens.weight"]})  # tied duplicate is fine
        ref.load_weights(MobileLLM(m.cfg), ok)

    def test_llama4_unimplemented_features_refused(self):
        m = build(tiny("llama4_text", attention_chunk_size=4))
        with self.assertRaises(RefInputError):
            m(rand_tokens(1, 5, 11))
        m(rand_tokens(1, 4, 11))
        m = build(tiny("llama4_text", no_rope_layers=[1, 0], attn_temperature_tuning=True, floor_scale=6))
        with self.assertRaises(RefInputError):
            m(rand_tokens(1, 6, 11))
        m(rand_tokens(1, 5, 11))


class GoldenTests(unittest.TestCase):
    GOLDEN = os.path.join(HERE, "golden.py")

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write_inputs(self, d, B=2, T=8, pos_doc=True):
        m = build(d, std=0.3)
        cfg_path = os.path.join(self.dir, "config.json")
        write_bytes(cfg_path, json.dumps(d).encode())
        w_path = os.path.join(self.dir, "w.safetensors")
        ref.write_safetensors(w_path, ref.state_dict_numpy(m))
        x = rand_tokens(B, T + 1, m.cfg.vocab_size, seed=5).int()
        batch = {"tokens": x[:, :-1].contiguous(), "targets": x[:, 1:].contiguous()}
        batch["targets"][0, 2] = -1
        if pos_doc:
            batch["pos"] = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4], list(range(3, 11))], dtype=torch.int32)
            batch["doc"] = torch.tensor([[7, 7, 7, 8, 8, 8, 8, 8], [1] * 8], dtype=torch.int32)
        b_path = os.path.join(self.dir, "batch.safetensors")
        ref.write_safetensors(b_path, batch)
        return m, cfg_path, w_path, b_path, batch

    def golden(self, *args):
        return subprocess.run([sys.executable, self.GOLDEN, *args], capture_output=True, text=True)

    def test_end_to_end(self):
        d = tiny("ministral", sliding_window=3, layer_types=["sliding_attention", "full_attention"],
                 tie_word_embeddings=True, layer_repeat=2)
        m, cfg_path, w_path, b_path, batch = self.write_inputs(d)
        out_path = os.path.join(self.dir, "out.safetensors")
        lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.95, 1e-8
        r = self.golden("--config", cfg_path, "--weights", w_path, "--batch", b_path, "--out", out_path,
                        "--steps", "1", "--lr", str(lr))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.strip().splitlines()), 1)
        self.assertIn("golden:", r.stdout)
        out, meta = ref.read_safetensors(out_path, to_float32=False)
        self.assertEqual(meta["format"], "pt")
        names = m.cfg.param_names()
        want_keys = {"logits", "loss", "losses"} | {"grad." + n for n in names} | {"final." + n for n in names}
        self.assertEqual(set(out), want_keys)
        self.assertTrue(all(a.dtype == np.float32 for a in out.values()))
        V = m.cfg.vocab_size
        self.assertEqual(out["logits"].shape, (16, V))
        self.assertEqual(out["loss"].shape, (1,))
        self.assertEqual(out["losses"][0], out["loss"][0])
        # the same numbers in process
        tok = {k: v.long() for k, v in batch.items()}
        m.zero_grad()
        logits = m(tok["tokens"], tok["pos"], tok["doc"])
        loss = ref.cross_entropy(logits, tok["targets"])
        loss.backward()
        np.testing.assert_allclose(out["logits"], logits.detach().reshape(-1, V).numpy(), atol=1e-5)
        self.assertAlmostEqual(out["loss"][0], loss.item(), places=5)
        # one AdamW step by hand: decay on matrices and the embedding only
        for n, p in m.named_parameters():
            g = p.grad.numpy().astype(np.float64)
            np.testing.assert_allclose(out["grad." + n], g, atol=1e-6, err_msg=n)
            w = p.detach().numpy().astype(np.float64)
            decay = wd if p.dim() >= 2 else 0.0
            mom, var = (1 - b1) * g, (1 - b2) * g * g
            want = w * (1 - lr * decay) - (lr / (1 - b1)) * mom / (np.sqrt(var) / math.sqrt(1 - b2) + eps)
            np.testing.assert_allclose(out["final." + n], want, atol=1e-5, err_msg=n)

    def test_training_lowers_loss(self):
        m, cfg_path, w_path, b_path, _ = self.write_inputs(tiny("llama4_text", tie_word_embeddings=False),
                                                           pos_doc=False)
        out_path = os.path.join(self.dir, "out.safetensors")
        r = self.golden("--config", cfg_path, "--weights", w_path, "--batch", b_path, "--out", out_path,
                        "--steps", "10", "--lr", "1e-2")
        self.assertEqual(r.returncode, 0, r.stderr)
        out, _ = ref.read_safetensors(out_path)
        self.assertEqual(out["losses"].shape, (10,))
        self.assertLess(out["losses"][-1], out["losses"][0] - 0.1)
        self.assertIn("final.lm_head.weight", out)
        self.assertIn("grad.model.layers.1.feed_forward.down_proj.weight", out)

    def test_bad_input(self):
        _, cfg_path, w_path, b_path, batch = self.write_inputs(tiny())
        out_path = os.path.join(self.dir, "out.safetensors")
        bad_batch = os.path.join(self.dir, "bad_batch.safetensors")
        ref.write_safetensors(bad_batch, dict(batch, tokens=batch["tokens"] + 100))
        no_targets = os.path.join(self.dir, "no_targets.safetensors")
        ref.write_safetensors(no_targets, {"tokens": batch["tokens"]})
        bad_cfg = os.path.join(self.dir, "bad.json")
        write_bytes(bad_cfg, b'{"model_type": "llama"')
        cases = [("--config", bad_cfg, "--weights", w_path, "--batch", b_path),
                 ("--config", cfg_path, "--weights", b_path, "--batch", b_path),
                 ("--config", cfg_path, "--weights", w_path, "--batch", bad_batch),
                 ("--config", cfg_path, "--weights", w_path, "--batch", no_targets),
                 ("--config", cfg_path, "--weights", os.path.join(self.dir, "missing"), "--batch", b_path)]
        for i, args in enumerate(cases):
            args = list(args) + ["--out", out_path, "--steps", "1"]
            if i == 0:  # the real command line once, the rest in process (faster)
                r = self.golden(*args)
                code, err = r.returncode, r.stderr
            else:
                buf = io.StringIO()
                with contextlib.redirect_stderr(buf):
                    code = golden.main(args)
                err = buf.getvalue()
            self.assertEqual(code, 2, args)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertTrue(err.startswith("golden.py: error: "), err)
            self.assertFalse(os.path.exists(out_path))
        self.assertEqual(sorted(os.listdir(self.dir)),
                         sorted(["config.json", "w.safetensors", "batch.safetensors", "bad_batch.safetensors",
                                 "no_targets.safetensors", "bad.json"]))


@unittest.skipUnless(os.path.isdir(TEACHER) or REQUIRE_SHARED, f"missing shared file {TEACHER}")
class TeacherCheckpointTests(unittest.TestCase):
    """The real transformers-written checkpoint: config with rope_parameters, index + bf16 shards."""

    def test_loads_and_scores_text(self):
        try:
            import sentencepiece
        except ImportError:
            self.skipTest("python3-sentencepiece is not installed")
        cfg = MobileLLMConfig.from_json_file(os.path.join(TEACHER, "config.json"))
        self.assertEqual((cfg.rope_theta, cfg.tie_word_embeddings, cfg.num_params()), (500000.0, True, 28_024_704))
        m = MobileLLM(cfg)
        ref.load_weights(m, ref.load_hf_weights(TEACHER), where=TEACHER)
        sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(TEACHER, "tokenizer.model"))
        text = read_bytes(os.path.join(SHARED, "data", "stories", "tinystories_valid_prefix.txt")).decode("utf-8")
        start = text.index("Once upon a time")  # the file starts mid-story
        ids = [sp.bos_id()] + sp.encode(text[start:start + 8000])
        T = 512
        self.assertGreater(len(ids), T + 1)
        x = torch.tensor(ids[:T + 1])[None]
        with torch.no_grad():
            logits = m(x[:, :-1])
            loss = ref.cross_entropy(logits, x[:, 1:]).item()
        self.assertTrue(torch.isfinite(logits).all())
        print(f"\n  teacher loss on {T} tokens of TinyStories validation text: {loss:.4f} "
              f"(ln 32000 = {math.log(32000):.2f})", file=sys.stderr)
        self.assertLess(loss, 5.0)
        self.assertGreater(loss, 0.5)


if __name__ == "__main__":
    # ctest's skip code (77) when nothing failed but something was skipped, with the reasons.
    result = unittest.main(exit=False).result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped:
        reasons = sorted({why for _, why in result.skipped})
        print(f"skipped parts ({len(result.skipped)}): " + "; ".join(reasons), file=sys.stderr)
        sys.exit(77)
