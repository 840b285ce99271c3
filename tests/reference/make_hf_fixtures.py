# Makes fixtures/hf/*: tiny random models run by Hugging Face transformers (not installed here;
# run where it is: python3 make_hf_fixtures.py OUTDIR). Each NAME.json is the config transformers
# wrote; NAME.safetensors holds the weights, tokens [2,12], pos [2,12] (two packed documents
# per row) and transformers' fp32 eager logits without (logits) and with (logits_pos) those pos.
# The committed fixtures were made with transformers 5.17.0 and torch 2.11.0 (CPU, float32).
import sys
import torch
from transformers import (LlamaConfig, LlamaForCausalLM, Llama4TextConfig, Llama4ForCausalLM,
                          MinistralConfig, MinistralForCausalLM)
from safetensors.torch import save_file
out = sys.argv[1]
torch.manual_seed(0)
R = lambda t: {"rope_type": "default", "rope_theta": t}
C = dict(vocab_size=96, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
         rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2)
models = {
 "llama": (LlamaForCausalLM, LlamaConfig(**C, intermediate_size=48, num_hidden_layers=2,
     head_dim=16, tie_word_embeddings=True, rope_parameters=R(1e4))),
 "llama4": (Llama4ForCausalLM, Llama4TextConfig(**C, intermediate_size=64,
     intermediate_size_mlp=40, num_hidden_layers=3, head_dim=8, use_qk_norm=True,
     no_rope_layers=[1, 0, 1], moe_layers=[], attn_temperature_tuning=False,
     attention_chunk_size=4096, tie_word_embeddings=True, rope_parameters=R(5e5))),
 "ministral": (MinistralForCausalLM, MinistralConfig(**C, intermediate_size=48,
     num_hidden_layers=3, head_dim=8, sliding_window=4, tie_word_embeddings=False,
     layer_types=["sliding_attention", "full_attention", "sliding_attention"],
     rope_parameters=R(1e4))),
 "ministral_def": (MinistralForCausalLM, MinistralConfig(**C, intermediate_size=48,
     num_hidden_layers=2, head_dim=8, sliding_window=3, tie_word_embeddings=True)),
}
x = torch.randint(0, 96, (2, 12))
p = torch.tensor([list(range(7)) + list(range(5))] * 2)
for name, (cls, cfg) in models.items():
    cfg._attn_implementation = "eager"
    m = cls(cfg).eval()
    with torch.no_grad():
        for _, w in m.named_parameters():  # large weights so that logits are far from uniform
            w.copy_(torch.randn_like(w) * (0.3 if w.dim() > 1 else 0.2) + (w.dim() == 1))
        d = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()
             if not (k == "lm_head.weight" and cfg.tie_word_embeddings)}
        d.update(logits=m(x).logits, logits_pos=m(x, position_ids=p).logits,
                 tokens=x.int(), pos=p.int())
    save_file(d, f"{out}/{name}.safetensors")
    open(f"{out}/{name}.json", "w").write(cfg.to_json_string())
import transformers
print("transformers", transformers.__version__, "torch", torch.__version__)
