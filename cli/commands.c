/* The table of subcommands (one line per cli/cmd_<name>.c). */
#include "cli/commands.h"

#define ML_DECLARE(n) int ml_cmd_##n(int argc, char **argv);
ML_DECLARE(init)
ML_DECLARE(info)
ML_DECLARE(train)
ML_DECLARE(distill)
ML_DECLARE(qat)
ML_DECLARE(quantize)
ML_DECLARE(teacher_logits)
ML_DECLARE(eval)
ML_DECLARE(logits)
ML_DECLARE(sample)
ML_DECLARE(tokenize)
ML_DECLARE(data)
ML_DECLARE(tokenizer)
ML_DECLARE(export)
ML_DECLARE(passkey)
ML_DECLARE(passkey_rows)
ML_DECLARE(import)
ML_DECLARE(merge)
ML_DECLARE(bench)
ML_DECLARE(version)
ML_DECLARE(mix)
#undef ML_DECLARE

const ml_command ml_commands[] = {
    {"init", ml_cmd_init, "new checkpoint from a config (MobileLLM initialisation)"},
    {"info", ml_cmd_info, "describe a checkpoint"},
    {"train", ml_cmd_train, "train (or resume) on token shards"},
    {"distill", ml_cmd_distill, "train from a teacher's logits (forward/reverse KL, JSD)"},
    {"qat", ml_cmd_qat, "quantization-aware fine-tuning (q4_0, q8_0, int4 groups, learned scales) with self-distillation"},
    {"quantize", ml_cmd_quantize, "post-training quantization: a checkpoint that computes with quantized weights"},
    {"teacher-logits", ml_cmd_teacher_logits, "a teacher's top-K log-probabilities over the training batches (HDF5)"},
    {"eval", ml_cmd_eval, "mean loss and perplexity of a checkpoint on token shards"},
    {"logits", ml_cmd_logits, "logits of a token sequence as a NumPy file"},
    {"sample", ml_cmd_sample, "generate text from a checkpoint (KV cache; temperature, top-k, top-p)"},
    {"tokenize", ml_cmd_tokenize, "text files -> token shard (bytes or a tokenizer file)"},
    {"data", ml_cmd_data, "inspect token shards: info, dump"},
    {"tokenizer", ml_cmd_tokenizer, "encode, decode, inspect or train (byte-level BPE) a tokenizer"},
    {"passkey", ml_cmd_passkey, "pass-key retrieval accuracy at long context"},
    {"passkey-rows", ml_cmd_passkey_rows, "synthetic pass-key training rows (JSONL) from a filler text"},
    {"export", ml_cmd_export, "checkpoint -> Hugging Face or GGUF file"},
    {"import", ml_cmd_import, "Hugging Face directory -> checkpoint"},
    {"merge", ml_cmd_merge, "merge checkpoints by a mergekit-style recipe, or search its weights on held-out shards"},
    {"bench", ml_cmd_bench, "time a training step: tokens/s, GFLOP/s, MFU, peak memory"},
    {"mix", ml_cmd_mix, "domain weights from influence or simulated runs (mixture.json for train --mixture)"},
    {"version", ml_cmd_version, "print the version and the BLAS kernel in use"},
};
const int ml_num_commands = sizeof ml_commands / sizeof ml_commands[0];
