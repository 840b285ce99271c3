"""Plain-PyTorch reference model of the MobileLLM family (v1, layer sharing, R1, Pro).

This is the independent implementation that the C trainer is checked against (golden.py) and the
PyTorch peer of the speed benchmark (bench/pytorch_train_bench.py). It depends only on torch and
numpy (no transformers, no safetensors package) and is written for clarity, not speed.

Architecture (one code path for every variant):

    h = embed_tokens[tokens]
    for each block i, applied `layer_repeat` times in a row with the same weights:
        h = h + o_proj(attention(rope?(q_proj(n)), rope?(k_proj(n)), v_proj(n)))   n = rmsnorm1(h)
        h = h + down_proj(silu(gate_proj(m)) * up_proj(m))                         m = rmsnorm2(h)
    logits = rmsnorm_f(h) @ W^T        W = embed_tokens (tied) or lm_head

Numerics follow Hugging Face transformers in float32:
  * RMSNorm: x * rsqrt(mean(x^2) + eps) * w, computed in float32.
  * RoPE: inv_freq = 1 / theta ** (arange(0, hd, 2).float() / hd) in float32, angle = pos.float() *
    inv_freq, cos/sin in float32. Pairing is either half-split (HF Llama `rotate_half`: pairs
    (i, i + hd/2)) or adjacent (Llama-4 / Meta: pairs (2i, 2i + 1)).
  * QK-norm (R1, `use_qk_norm`: default true in llama4_text, honoured in any dialect): weightless
    x * rsqrt(mean(x^2) + eps) over each head, applied to q and k AFTER RoPE, only on layers that
    use RoPE (as transformers' Llama4TextAttention does).
  * Attention: softmax(q k^T / sqrt(hd) + mask) v with GQA (query head j reads kv head
    j // (H / KV)). Token t attends to token s when s <= t (by index in the row), and:
      - sliding layers: t - s < sliding_window (itself and the previous W-1 tokens, as transformers'
        Ministral/Mistral masks; measured in token indices, not position ids);
      - with a document mask: doc[s] == doc[t].
  * Positions: optional per-token position ids (default 0..T-1 in every row); they feed RoPE only.
  * Loss: mean cross-entropy over tokens whose target is >= 0 (negative targets are ignored).

Config dialects read from an HF-style config.json (see MobileLLMConfig.from_hf_dict):
  llama / mobilellm: HF Llama names, half-split RoPE. Tied when tie_word_embeddings or share_embedding
      (mobilellm's share_embedding defaults to true). layer_repeat: integer `layer_repeat`, else
      `layer_sharing: true` -> 2. Optional layer_types + sliding_window (MobileLLM-Pro style).
  llama4_text (MobileLLM-R1): adjacent RoPE, use_qk_norm, no_rope_layers (1 = the layer uses RoPE),
      FFN width intermediate_size_mlp, FFN tensors named model.layers.{i}.feed_forward.*.
  ministral: per-layer layer_types (sliding_attention / full_attention) with sliding_window.
Absent keys take the defaults of the matching transformers config class (rms_norm_eps 1e-6 for
llama/ministral, 1e-5 for mobilellm/llama4_text; rope_theta 10000, llama4_text 500000; ministral
sliding_window 4096). Not implemented (rejected with a message rather than silently computed
differently): RoPE scaling, biases, activations other than silu, mixture-of-experts layers,
Llama-4 chunked attention and attention-temperature tuning for sequences long enough to be
affected by them (T > attention_chunk_size, T >= floor_scale).

Checked against transformers 5.17 (fixtures/hf, test_reference.py): logits agree to ~1e-5 for
llama, llama4_text and ministral models.

Parameters carry their Hugging Face names (named_parameters() yields exactly the checkpoint names):
  model.embed_tokens.weight [V, C], model.layers.{i}.input_layernorm.weight [C],
  model.layers.{i}.self_attn.{q,k,v,o}_proj.weight [out, in], model.layers.{i}.post_attention_layernorm.weight,
  model.layers.{i}.mlp.{gate,up,down}_proj.weight (llama4_text: feed_forward.*), model.norm.weight,
  lm_head.weight (only when untied).

The module also holds a small safetensors reader/writer (numpy only): read_safetensors,
write_safetensors, load_hf_weights (single file, folder, or sharded folder with an index).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class RefInputError(ValueError):
    """Bad input to the reference (config, weights, batch): the message says what and where."""


# ---------------------------------------------------------------------------------------------
# safetensors (numpy): 8-byte LE header length, JSON header, contiguous row-major data.
# ---------------------------------------------------------------------------------------------

_ST_DTYPES = {  # safetensors dtype -> numpy dtype of the stored bytes
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_NP_TO_ST = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<f2"): "F16",
             np.dtype("<i8"): "I64", np.dtype("<i4"): "I32", np.dtype("<i2"): "I16",
             np.dtype("i1"): "I8", np.dtype("u1"): "U8", np.dtype("?"): "BOOL"}
_ST_MAX_HEADER = 100_000_000  # the reference implementation's limit


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def read_safetensors(path: str, to_float32: bool = True) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Read a .safetensors file -> ({name: array}, metadata).

    With to_float32, F16/F64 tensors are converted to float32; BF16 always is (integer tensors keep
    their type). The layout is validated (header size, contiguous offsets without holes, file size) so a
    damaged file fails with a message instead of producing garbage.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise RefInputError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _ST_MAX_HEADER or 8 + n > len(raw):
        raise RefInputError(f"{path}: header length {n} does not fit the file ({len(raw)} bytes)")
    header_bytes = raw[8:8 + n]
    if not header_bytes.startswith(b"{"):
        raise RefInputError(f"{path}: header does not start with '{{'")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RefInputError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise RefInputError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + n:]
    spans = []
    out: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], list(info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise RefInputError(f"{path}: tensor '{name}' has a malformed entry") from None
        if dtype not in _ST_DTYPES:
            raise RefInputError(f"{path}: tensor '{name}' has unsupported dtype {dtype}")
        if any((not isinstance(d, int)) or d < 0 for d in shape):
            raise RefInputError(f"{path}: tensor '{name}' has a bad shape {shape}")
        npdt = _ST_DTYPES[dtype]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * npdt.itemsize:
            raise RefInputError(f"{path}: tensor '{name}' offsets [{begin},{end}) do not match "
                                  f"{dtype}{shape} or the data size {len(data)}")
        spans.append((begin, end, name))
        arr = np.frombuffer(data[begin:end], dtype=npdt).reshape(shape).copy()
        if dtype == "BF16":  # numpy has no bfloat16: always widened (exactly) to float32
            arr = bf16_bits_to_f32(arr)
        elif to_float32 and dtype in ("F16", "F64"):
            arr = arr.astype(np.float32)
        out[name] = arr
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            raise RefInputError(f"{path}: data of tensor '{name}' starts at {begin}, expected {pos} "
                                  "(holes or overlaps)")
        pos = end
    if pos != len(data):
        raise RefInputError(f"{path}: {len(data) - pos} trailing bytes after the last tensor")
    return out, metadata


def write_safetensors(path: str, tensors: Dict[str, object], metadata: Optional[Dict[str, str]] = None,
                      bf16: Tuple[str, ...] = ()) -> None:
    """Write {name: array or tensor} as safetensors, atomically (temp file, fsync, rename).

    The dtype follows the array (float32 -> F32, int32 -> I32, ...); names listed in `bf16` are
    rounded from float32 to BF16. The header carries "__metadata__": {"format": "pt"} (plus any
    given metadata) and is space-padded to a multiple of 8; tensors are ordered by decreasing
    element size, then name, so every tensor is naturally aligned.
    """
    arrays = {}
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        a = np.asarray(t, order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
        if name in bf16:
            arrays[name] = ("BF16", f32_to_bf16_bits(a.astype(np.float32)))
            continue
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        st = _NP_TO_ST.get(a.dtype)
        if st is None:
            raise RefInputError(f"{path}: tensor '{name}' has unsupported dtype {a.dtype}")
        arrays[name] = (st, a)
    order = sorted(arrays, key=lambda k: (-arrays[k][1].dtype.itemsize, k))
    header: Dict[str, object] = {"__metadata__": dict({"format": "pt"}, **(metadata or {}))}
    offset = 0
    for name in order:
        st, a = arrays[name]
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for name in order:
                f.write(arrays[name][1].tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_hf_weights(path: str) -> Dict[str, np.ndarray]:
    """Float32 weights of a checkpoint: a .safetensors file, or a folder holding model.safetensors
    or a sharded model.safetensors.index.json (as transformers' save_pretrained writes)."""
    if os.path.isdir(path):
        index = os.path.join(path, "model.safetensors.index.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.exists(index):
            with open(index) as f:
                weight_map = json.load(f).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise RefInputError(f"{index}: no weight_map")
            out: Dict[str, np.ndarray] = {}
            for shard in sorted(set(weight_map.values())):
                tensors, _ = read_safetensors(os.path.join(path, shard))
                out.update(tensors)
            missing = [k for k in weight_map if k not in out]
            if missing:
                raise RefInputError(f"{index}: tensors listed but not found in the shards: {missing[:3]}")
            return out
        if os.path.exists(single):
            return read_safetensors(single)[0]
        raise RefInputError(f"{path}: no model.safetensors or model.safetensors.index.json")
    return read_safetensors(path)[0]


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

DIALECTS = ("llama", "mobilellm", "llama4_text", "ministral")
# Defaults of the corresponding transformers config classes where a key is absent.
_DEFAULT_EPS = {"llama": 1e-6, "mobilellm": 1e-5, "llama4_text": 1e-5, "ministral": 1e-6}
_DEFAULT_THETA = {"llama": 10000.0, "mobilellm": 10000.0, "llama4_text": 500000.0, "ministral": 10000.0}


@dataclass
class MobileLLMConfig:
    dialect: str
    vocab_size: int
    hidden_size: int          # C
    intermediate_size: int    # F (llama4_text: intermediate_size_mlp)
    num_layers: int           # distinct blocks L
    num_heads: int            # H
    num_kv_heads: int         # KV
    head_dim: int             # hd
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    layer_repeat: int = 1
    rope_pairing: str = "half"  # "half" (HF rotate_half) or "adjacent" (Llama-4)
    use_qk_norm: bool = False
    layer_rope: List[bool] = field(default_factory=list)     # per block: applies RoPE
    layer_sliding: List[bool] = field(default_factory=list)  # per block: sliding-window attention
    sliding_window: Optional[int] = None
    initializer_range: float = 0.02
    # Llama-4 features that are not implemented; kept so that forward can refuse inputs they affect.
    layer_chunked: List[bool] = field(default_factory=list)
    attention_chunk_size: Optional[int] = None
    attn_temperature_tuning: bool = False
    floor_scale: int = 8192

    @property
    def ffn_name(self) -> str:
        return "feed_forward" if self.dialect == "llama4_text" else "mlp"

    @property
    def applied_layers(self) -> int:
        return self.num_layers * self.layer_repeat

    def __post_init__(self):
        L = self.num_layers
        if not self.layer_rope:
            self.layer_rope = [True] * L
        if not self.layer_sliding:
            self.layer_sliding = [False] * L
        if not self.layer_chunked:
            self.layer_chunked = [False] * L
        self.validate()

    def validate(self) -> None:
        def need(cond, msg):
            if not cond:
                raise RefInputError(f"config: {msg}")
        need(self.dialect in DIALECTS, f"unsupported model_type '{self.dialect}' (expected one of {DIALECTS})")
        for k in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                  "num_kv_heads", "head_dim", "layer_repeat"):
            v = getattr(self, k)
            need(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"{k} must be a positive integer (got {v!r})")
        need(self.num_heads % self.num_kv_heads == 0,
             f"num_attention_heads {self.num_heads} is not a multiple of num_key_value_heads {self.num_kv_heads}")
        need(self.head_dim % 2 == 0, f"head_dim {self.head_dim} must be even for RoPE")
        need(self.rms_norm_eps > 0, f"rms_norm_eps must be > 0 (got {self.rms_norm_eps})")
        need(self.rope_theta > 0, f"rope_theta must be > 0 (got {self.rope_theta})")
        need(self.rope_pairing in ("half", "adjacent"), f"rope pairing '{self.rope_pairing}'")
        for k in ("layer_rope", "layer_sliding", "layer_chunked"):
            need(len(getattr(self, k)) == self.num_layers,
                 f"{k} has {len(getattr(self, k))} entries, expected num_hidden_layers = {self.num_layers}")
        if any(self.layer_sliding):
            need(isinstance(self.sliding_window, int) and self.sliding_window > 0,
                 f"sliding layers need a positive integer sliding_window (got {self.sliding_window!r})")

    # -- parsing ----------------------------------------------------------------------------

    @classmethod
    def from_json_file(cls, path: str) -> "MobileLLMConfig":
        try:
            with open(path) as f:
                d = json.load(f)
        except OSError as e:
            raise RefInputError(f"{path}: cannot read: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise RefInputError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise RefInputError(f"{path}: not a JSON object")
        try:
            return cls.from_hf_dict(d)
        except RefInputError as e:
            raise RefInputError(f"{path}: {e}") from None

    @classmethod
    def from_hf_dict(cls, d: dict) -> "MobileLLMConfig":
        """Parse an HF-style config dict in any supported dialect (see the module docstring)."""
        def req(key):
            if d.get(key) is None:
                raise RefInputError(f"config: missing '{key}'")
            return d[key]

        dialect = d.get("model_type")
        if dialect not in DIALECTS:
            raise RefInputError(f"config: unsupported model_type {dialect!r} (expected one of {DIALECTS})")
        if d.get("hidden_act", "silu") != "silu":
            raise RefInputError(f"config: hidden_act '{d['hidden_act']}' is not supported (only silu)")
        for key in ("attention_bias", "mlp_bias"):
            if d.get(key):
                raise RefInputError(f"config: {key}=true is not supported")

        L = req("num_hidden_layers")
        H = req("num_attention_heads")
        C = req("hidden_size")
        KV = d.get("num_key_value_heads") or H
        hd = d.get("head_dim")
        if hd is None:
            if not isinstance(C, int) or not isinstance(H, int) or H <= 0 or C % H:
                raise RefInputError(f"config: no head_dim and hidden_size {C} is not a multiple of "
                                      f"num_attention_heads {H}")
            hd = C // H
        if dialect == "llama4_text":
            ffn = d.get("intermediate_size_mlp") or req("intermediate_size")
        else:
            ffn = req("intermediate_size")

        # Embedding sharing: MobileLLM's remote code shares when share_embedding (default true)
        # even though it writes tie_word_embeddings: false.
        share_default = dialect == "mobilellm"
        tied = bool(d.get("tie_word_embeddings", False)) or bool(d.get("share_embedding", share_default))

        # Layer sharing: explicit integer wins; layer_sharing: true means "each block twice".
        if d.get("layer_repeat") is not None:
            repeat = d["layer_repeat"]
        else:
            repeat = 2 if d.get("layer_sharing") else 1

        theta = _parse_rope_theta(d, _DEFAULT_THETA[dialect])

        # RoPE per layer (Llama-4 no_rope_layers: 1 = this layer applies RoPE).
        layer_rope = [True] * L
        use_qk_norm = bool(d.get("use_qk_norm", dialect == "llama4_text"))
        if dialect == "llama4_text":
            nrl = d.get("no_rope_layers")
            if not nrl:  # transformers' default: every no_rope_layer_interval-th layer is NoPE
                interval = d.get("no_rope_layer_interval", 4)
                nrl = [int((i + 1) % interval != 0) for i in range(L)]
            if not isinstance(nrl, list) or len(nrl) != L or any(v not in (0, 1) for v in nrl):
                raise RefInputError(f"config: no_rope_layers must be a list of {L} zeros/ones")
            layer_rope = [bool(v) for v in nrl]
            if d.get("moe_layers"):
                raise RefInputError("config: mixture-of-experts layers (moe_layers) are not supported")

        # Attention type per layer.
        window = d.get("sliding_window")
        types = d.get("layer_types")
        if dialect == "ministral":
            if "sliding_window" not in d:
                window = 4096  # MinistralConfig default
            if types is None:
                types = ["sliding_attention" if window is not None else "full_attention"] * L
        chunk = d.get("attention_chunk_size") if dialect == "llama4_text" else None
        if types is None:
            if dialect == "llama4_text" and chunk is not None:
                types = ["chunked_attention" if r else "full_attention" for r in layer_rope]
            else:
                types = ["full_attention"] * L
        allowed = ("full_attention", "sliding_attention", "chunked_attention")
        if not isinstance(types, list) or len(types) != L or any(t not in allowed for t in types):
            raise RefInputError(f"config: layer_types must be a list of {L} entries from {allowed}")
        if "chunked_attention" in types and chunk is None:
            raise RefInputError("config: chunked_attention layers need attention_chunk_size")

        return cls(
            dialect=dialect, vocab_size=req("vocab_size"), hidden_size=C, intermediate_size=ffn,
            num_layers=L, num_heads=H, num_kv_heads=KV, head_dim=hd,
            rms_norm_eps=float(d.get("rms_norm_eps") or _DEFAULT_EPS[dialect]), rope_theta=theta,
            tie_word_embeddings=tied, layer_repeat=repeat,
            rope_pairing="adjacent" if dialect == "llama4_text" else "half",
            use_qk_norm=use_qk_norm, layer_rope=layer_rope,
            layer_sliding=[t == "sliding_attention" for t in types],
            sliding_window=window if "sliding_attention" in types else None,
            initializer_range=float(d.get("initializer_range", 0.02)),
            layer_chunked=[t == "chunked_attention" for t in types], attention_chunk_size=chunk,
            attn_temperature_tuning=bool(d.get("attn_temperature_tuning", dialect == "llama4_text")),
            floor_scale=int(d.get("floor_scale", 8192)),
        )

    # -- sizes ------------------------------------------------------------------------------

    def matmul_params_per_block(self) -> int:
        C, F_, hd = self.hidden_size, self.intermediate_size, self.head_dim
        return C * self.num_heads * hd * 2 + C * self.num_kv_heads * hd * 2 + 3 * C * F_

    def num_params(self) -> int:
        """Stored parameters (the embedding counted once when tied)."""
        C, V = self.hidden_size, self.vocab_size
        per_block = self.matmul_params_per_block() + 2 * C
        return self.num_layers * per_block + V * C + C + (0 if self.tie_word_embeddings else V * C)

    def param_names(self) -> List[str]:
        names = ["model.embed_tokens.weight"]
        for i in range(self.num_layers):
            p = f"model.layers.{i}."
            names += [p + "input_layernorm.weight"] + [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
            names += [p + "post_attention_layernorm.weight"]
            names += [p + f"{self.ffn_name}.{x}_proj.weight" for x in ("gate", "up", "down")]
        names.append("model.norm.weight")
        if not self.tie_word_embeddings:
            names.append("lm_head.weight")
        return names


def _parse_rope_theta(d: dict, default: float) -> float:
    """rope_theta (v4 style) or rope_parameters.rope_theta (v5, possibly keyed per layer type)."""
    scaling = d.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise RefInputError(f"config: rope_scaling {scaling} is not supported")
    rp = d.get("rope_parameters")
    if isinstance(rp, dict) and rp:
        if all(isinstance(v, dict) for v in rp.values()):  # {"full_attention": {...}, ...}
            entries = list(rp.values())
        else:
            entries = [rp]
        thetas = set()
        for e in entries:
            if e.get("rope_type", "default") != "default":
                raise RefInputError(f"config: rope_type '{e.get('rope_type')}' is not supported")
            thetas.add(float(e.get("rope_theta", d.get("rope_theta", default))))
        if len(thetas) != 1:
            raise RefInputError(f"config: different rope_theta per layer type {sorted(thetas)} is not supported")
        return thetas.pop()
    return float(d.get("rope_theta") if d.get("rope_theta") is not None else default)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) over the last dimension, in float32 (float64 when x is)."""
    xf = x if x.dtype == torch.float64 else x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.eps) * self.weight


def rope_cos_sin(pos: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos, sin of pos * inv_freq: [B, T, hd/2], computed in float32 as transformers does."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    angles = pos.float()[..., None] * inv_freq  # [B, T, hd/2] float32
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pairing: str) -> torch.Tensor:
    """Rotate x [B, n_heads, T, hd] by the angles (cos, sin [B, T, hd/2]).

    half:     pairs (x[i], x[i + hd/2])  -- HF Llama q*cos + rotate_half(q)*sin
    adjacent: pairs (x[2i], x[2i + 1])   -- Llama-4 complex multiplication
    """
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    if pairing == "half":
        h = x.shape[-1] // 2
        a, b = x[..., :h], x[..., h:]
        return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: MobileLLMConfig, layer: int):
        super().__init__()
        C, H, KV, hd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.cfg, self.H, self.KV, self.hd = cfg, H, KV, hd
        self.use_rope = cfg.layer_rope[layer]
        self.use_qk_norm = cfg.use_qk_norm and self.use_rope  # as transformers' Llama-4
        self.q_proj = nn.Linear(C, H * hd, bias=False)
        self.k_proj = nn.Linear(C, KV * hd, bias=False)
        self.v_proj = nn.Linear(C, KV * hd, bias=False)
        self.o_proj = nn.Linear(H * hd, C, bias=False)

    def forward(self, x, cos, sin, allowed):
        """x [B, T, C]; allowed [B or 1, 1, T, T] boolean (True = may attend)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd).transpose(1, 2)   # [B, H, T, hd]
        k = self.k_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)  # [B, KV, T, hd]
        v = self.v_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        if self.use_rope:
            q = apply_rope(q, cos, sin, self.cfg.rope_pairing)
            k = apply_rope(k, cos, sin, self.cfg.rope_pairing)
        if self.use_qk_norm:
            q = rms_norm(q, self.cfg.rms_norm_eps)
            k = rms_norm(k, self.cfg.rms_norm_eps)
        groups = self.H // self.KV
        k = k.repeat_interleave(groups, dim=1)  # query head j reads kv head j // groups
        v = v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        scores = scores.masked_fill(~allowed, float("-inf"))  # every row keeps its own token
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, self.H * self.hd)
        return self.o_proj(out)


class SwiGLU(nn.Module):
    def __init__(self, C: int, F_: int):
        super().__init__()
        self.gate_proj = nn.Linear(C, F_, bias=False)
        self.up_proj = nn.Linear(C, F_, bias=False)
        self.down_proj = nn.Linear(F_, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: MobileLLMConfig, layer: int):
        super().__init__()
        self.ffn_name = cfg.ffn_name
        self.sliding = cfg.layer_sliding[layer]
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        setattr(self, self.ffn_name, SwiGLU(cfg.hidden_size, cfg.intermediate_size))  # mlp / feed_forward

    def forward(self, h, cos, sin, allowed_full, allowed_sliding):
        allowed = allowed_sliding if self.sliding else allowed_full
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, allowed)
        return h + getattr(self, self.ffn_name)(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    """Holds the parameters under the HF prefix `model.`."""

    def __init__(self, cfg: MobileLLMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


def attention_masks(B: int, T: int, doc: Optional[torch.Tensor], window: Optional[int], device=None):
    """Boolean masks [B or 1, 1, T, T] (query t, key s): full causal and sliding-window causal,
    both restricted to equal document ids when doc [B, T] is given."""
    t = torch.arange(T, device=device)
    causal = t[None, :] <= t[:, None]                       # s <= t
    full = causal[None, None]
    if doc is not None:
        full = full & (doc[:, None, :, None] == doc[:, None, None, :])
    sliding = None
    if window is not None:
        sliding = full & ((t[:, None] - t[None, :]) < window)[None, None]  # t - s < W
    return full, sliding


class MobileLLM(nn.Module):
    def __init__(self, cfg: MobileLLMConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def head_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.cfg.tie_word_embeddings else self.lm_head.weight

    def forward(self, tokens: torch.Tensor, pos: Optional[torch.Tensor] = None,
                doc: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tokens [B, T] (int) -> logits [B, T, V]. pos [B, T]: position ids (default 0..T-1);
        doc [B, T]: document ids (attention stays inside a document)."""
        cfg = self.cfg
        B, T = tokens.shape
        self._check_unsupported(T)
        if pos is None:
            pos = torch.arange(T, device=tokens.device)[None].expand(B, T)
        dtype = self.model.embed_tokens.weight.dtype
        cos, sin = rope_cos_sin(pos, cfg.head_dim, cfg.rope_theta, dtype)
        allowed_full, allowed_sliding = attention_masks(
            B, T, doc, cfg.sliding_window if any(cfg.layer_sliding) else None, tokens.device)
        h = self.model.embed_tokens(tokens.long())
        for layer in self.model.layers:
            for _ in range(cfg.layer_repeat):  # immediate block-wise sharing
                h = layer(h, cos, sin, allowed_full, allowed_sliding)
        h = self.model.norm(h)
        return F.linear(h, self.head_weight())

    def _check_unsupported(self, T: int) -> None:
        cfg = self.cfg
        if any(cfg.layer_chunked) and T > cfg.attention_chunk_size:
            raise RefInputError(f"sequence length {T} exceeds attention_chunk_size "
                                  f"{cfg.attention_chunk_size}: Llama-4 chunked attention is not implemented")
        if cfg.attn_temperature_tuning and not all(cfg.layer_rope) and T >= cfg.floor_scale:
            raise RefInputError(f"sequence length {T} >= floor_scale {cfg.floor_scale}: Llama-4 attention "
                                  "temperature tuning of NoPE layers is not implemented")


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the tokens whose target is >= 0."""
    V = logits.shape[-1]
    t = targets.reshape(-1).long()
    t = torch.where(t >= 0, t, torch.full_like(t, -100))
    return F.cross_entropy(logits.reshape(-1, V), t, ignore_index=-100, reduction="mean")


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

def init_weights(model: MobileLLM, seed: int = 0, std: Optional[float] = None) -> None:
    """MobileLLM initialisation: N(0, std) for matrices and the embedding, ones for norms."""
    std = model.cfg.initializer_range if std is None else std
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std)
            else:
                p.fill_(1.0)


def load_weights(model: MobileLLM, weights: Dict[str, np.ndarray], where: str = "weights") -> None:
    """Copy HF-named arrays into the model. Every parameter must be present with its shape; unknown
    tensors are errors, except rotary inv_freq buffers and, for tied models, an lm_head.weight that
    equals the embedding."""
    params = dict(model.named_parameters())
    extra = [k for k in weights if k not in params and not k.endswith("rotary_emb.inv_freq")]
    if model.cfg.tie_word_embeddings and "lm_head.weight" in extra:
        if "model.embed_tokens.weight" not in weights or not np.array_equal(
                weights["lm_head.weight"], weights["model.embed_tokens.weight"]):
            raise RefInputError(f"{where}: lm_head.weight differs from the embedding but the config ties them")
        extra.remove("lm_head.weight")
    if extra:
        raise RefInputError(f"{where}: unexpected tensors {sorted(extra)[:4]} for this config")
    missing = [k for k in params if k not in weights]
    if missing:
        raise RefInputError(f"{where}: missing tensors {missing[:4]}")
    with torch.no_grad():
        for name, p in params.items():
            a = weights[name]
            if tuple(a.shape) != tuple(p.shape):
                raise RefInputError(f"{where}: tensor '{name}' has shape {list(a.shape)}, "
                                      f"expected {list(p.shape)}")
            if not np.issubdtype(a.dtype, np.floating):
                raise RefInputError(f"{where}: tensor '{name}' is not floating point ({a.dtype})")
            p.copy_(torch.from_numpy(np.ascontiguousarray(a)).to(p.dtype))


def state_dict_numpy(model: MobileLLM) -> Dict[str, np.ndarray]:
    """HF-named float32 arrays of every parameter (tied models have no lm_head.weight)."""
    return {k: p.detach().float().cpu().numpy() for k, p in model.named_parameters()}


def weight_decay_groups(model: MobileLLM, weight_decay: float):
    """AdamW parameter groups: decay on matrices and the embedding, none on norm weights."""
    decay = [p for _, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
