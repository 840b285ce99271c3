/* Model configuration: preset files, HF dialects, validation, parameter counts, FLOPs, round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/atomic_file.h"
#include "model/config.h"
#include "tests/support/test_util.h"

static const char *preset_path(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/configs/%s.json", ML_SOURCE_DIR, name);
    return buf;
}

static void load_preset(ml_config *c, const char *name) {
    ml_status st = ml_config_load(c, preset_path(name));
    if (st != ML_OK) fail_msg("loading preset %s: %s", name, ml_last_error());
}

/* Parse text that must succeed. */
static ml_config parse_ok(const char *json) {
    ml_config c;
    ml_status st = ml_config_from_json(&c, json, "inline.json");
    if (st != ML_OK) fail_msg("expected success, got %s: %s\n%s", ml_status_name(st), ml_last_error(), json);
    return c;
}

/* Parse text that must fail with `want`, with every `needles` string in the message. */
static void parse_fails(const char *json, ml_status want, const char *needle1, const char *needle2) {
    ml_config c;
    ml_status st = ml_config_from_json(&c, json, "bad.json");
    const char *msg = ml_last_error();
    printf("  [%s] %s\n", ml_status_name(st), msg);
    if (st != want)
        fail_msg("expected %s, got %s (%s) for\n%s", ml_status_name(want), ml_status_name(st), msg, json);
    if (!strstr(msg, "bad.json")) fail_msg("message does not name the source: %s", msg);
    if (needle1 && !strstr(msg, needle1)) fail_msg("message lacks \"%s\": %s", needle1, msg);
    if (needle2 && !strstr(msg, needle2)) fail_msg("message lacks \"%s\": %s", needle2, msg);
}

/* Field-by-field equality (name excluded: it only labels messages). */
static void assert_config_equal(const ml_config *a, const ml_config *b) {
    assert_int_equal(a->dialect, b->dialect);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->hidden_size, b->hidden_size);
    assert_int_equal(a->intermediate_size, b->intermediate_size);
    assert_int_equal(a->num_layers, b->num_layers);
    assert_int_equal(a->num_heads, b->num_heads);
    assert_int_equal(a->num_kv_heads, b->num_kv_heads);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->max_position_embeddings, b->max_position_embeddings);
    assert_true(a->rms_norm_eps == b->rms_norm_eps);
    assert_true(a->rope_theta == b->rope_theta);
    assert_true(a->initializer_range == b->initializer_range);
    assert_int_equal(a->tie_word_embeddings, b->tie_word_embeddings);
    assert_int_equal(a->layer_repeat, b->layer_repeat);
    assert_int_equal(a->use_qk_norm, b->use_qk_norm);
    assert_int_equal(a->rope_pairing, b->rope_pairing);
    assert_int_equal(a->sliding_window, b->sliding_window);
    assert_memory_equal(a->layer_sliding, b->layer_sliding, ML_MAX_LAYERS);
    assert_memory_equal(a->layer_rope, b->layer_rope, ML_MAX_LAYERS);
    assert_int_equal(a->bos_token_id, b->bos_token_id);
    assert_int_equal(a->eos_token_id, b->eos_token_id);
    assert_int_equal(a->pad_token_id, b->pad_token_id);
}

static const struct {
    const char *name;
    int64_t params;
    ml_dialect dialect;
    int tied, repeat;
} presets[] = {
    {"mobilellm-125m", 124635456, ML_DIALECT_LLAMA, 1, 1},
    {"mobilellm-350m", 345355200, ML_DIALECT_LLAMA, 1, 1},
    {"mobilellm-600m", 603188352, ML_DIALECT_LLAMA, 1, 1},
    {"mobilellm-1b", 1005461760, ML_DIALECT_LLAMA, 1, 1},
    {"mobilellm-1.5b", 1562388800, ML_DIALECT_LLAMA, 0, 1},
    {"mobilellm-ls-125m", 124635456, ML_DIALECT_LLAMA, 1, 2},
    {"mobilellm-ls-350m", 345355200, ML_DIALECT_LLAMA, 1, 2},
    {"mobilellm-r1-140m", 140248512, ML_DIALECT_LLAMA4_TEXT, 1, 1},
    {"mobilellm-r1-360m", 359431168, ML_DIALECT_LLAMA4_TEXT, 1, 1},
    {"mobilellm-r1-950m", 949685760, ML_DIALECT_LLAMA4_TEXT, 1, 1},
    {"mobilellm-pro-1b", 1084453120, ML_DIALECT_MINISTRAL, 1, 1},
    {"tiny-v1", 90624, ML_DIALECT_LLAMA, 1, 2},
    {"tiny-r1", 78336, ML_DIALECT_LLAMA4_TEXT, 1, 1},
    {"tiny-pro", 127616, ML_DIALECT_MINISTRAL, 1, 1},
    {"demo-10m", 12688896, ML_DIALECT_LLAMA, 1, 1},
    {"ipd-student", 11340032, ML_DIALECT_LLAMA, 1, 1},
    {"recipe-student", 820736, ML_DIALECT_LLAMA, 1, 2},
    {"recipe-teacher", 1624320, ML_DIALECT_LLAMA, 1, 1},
    {"recipe-tiny-student", 90624, ML_DIALECT_LLAMA, 1, 2},
    {"recipe-tiny-teacher", 228096, ML_DIALECT_LLAMA, 1, 1},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

/* ---- presets -------------------------------------------------------------------------------- */

static void test_preset_param_counts(void **state) {
    (void)state;
    for (size_t i = 0; i < N_PRESETS; i++) {
        ml_config c;
        load_preset(&c, presets[i].name);
        int64_t n = ml_config_num_params(&c);
        printf("  %-20s %14lld params  (%d layers x%d, C=%d, H=%d/%d, hd=%d, F=%d, V=%d, %s)\n", presets[i].name,
               (long long)n, c.num_layers, c.layer_repeat, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
               c.intermediate_size, c.vocab_size, c.tie_word_embeddings ? "tied" : "untied");
        if (n != presets[i].params)
            fail_msg("%s: %lld params, expected %lld", presets[i].name, (long long)n, (long long)presets[i].params);
        assert_int_equal(c.dialect, presets[i].dialect);
        assert_int_equal(c.tie_word_embeddings, presets[i].tied);
        assert_int_equal(c.layer_repeat, presets[i].repeat);
        assert_string_equal(c.name, presets[i].name);
    }
}

static void test_preset_shapes(void **state) {
    (void)state;
    ml_config c;
    /* 1.5B: untied head adds exactly V*C. */
    load_preset(&c, "mobilellm-1.5b");
    assert_int_equal(ml_config_num_params(&c), 1562388800);
    c.tie_word_embeddings = 1;
    assert_int_equal(ml_config_num_params(&c), 1562388800 - 32000LL * 1600);

    /* LS models: same parameters as the base, twice the applied blocks. */
    ml_config base, ls;
    load_preset(&base, "mobilellm-125m");
    load_preset(&ls, "mobilellm-ls-125m");
    assert_int_equal(ml_config_num_params(&base), ml_config_num_params(&ls));
    assert_int_equal(ml_config_applied_layers(&ls), 60);
    assert_int_equal(base.rope_pairing, ML_ROPE_HALF_SPLIT);
    assert_true(base.rope_theta == 10000.0f);
    assert_int_equal(base.max_position_embeddings, 2048);
    assert_int_equal(base.bos_token_id, 1);
    assert_int_equal(base.eos_token_id, 2);
    assert_int_equal(base.pad_token_id, -1);

    /* R1: llama4_text semantics. */
    load_preset(&c, "mobilellm-r1-950m");
    assert_int_equal(c.rope_pairing, ML_ROPE_ADJACENT);
    assert_int_equal(c.use_qk_norm, 1);
    assert_true(c.rope_theta == 8.0e6f);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_int_equal(c.intermediate_size, 6144);
    for (int i = 0; i < c.num_layers; i++) assert_int_equal(c.layer_rope[i], 1);

    /* Pro: global at i % 4 == 3 plus first and last, sliding 512 elsewhere. */
    load_preset(&c, "mobilellm-pro-1b");
    assert_int_equal(c.sliding_window, 512);
    assert_int_equal(c.max_position_embeddings, 131072);
    assert_true(c.rope_theta == 500000.0f);
    int globals = 0;
    for (int i = 0; i < 30; i++) {
        int global = i % 4 == 3 || i == 0 || i == 29;
        assert_int_equal(c.layer_sliding[i], !global);
        globals += global;
    }
    assert_int_equal(globals, 9);

    /* Tiny presets. */
    load_preset(&c, "tiny-pro");
    assert_int_equal(c.sliding_window, 8);
    assert_int_equal(c.layer_sliding[0], 1);
    assert_int_equal(c.layer_sliding[1], 0);
    assert_int_equal(c.layer_sliding[2], 1);
    load_preset(&c, "tiny-v1");
    assert_int_equal(c.vocab_size, 259);
    assert_int_equal(c.bos_token_id, 256);
    assert_int_equal(c.eos_token_id, 257);
    assert_int_equal(c.pad_token_id, 258);
    load_preset(&c, "tiny-r1");
    assert_int_equal(c.use_qk_norm, 1);
    assert_int_equal(c.intermediate_size, 96);
}

static void test_teacher_config(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/teachers/mobilellm-28m-llama2tok/config.json", ML_SHARED_DIR);
    ML_NEED_SHARED(path);
    ml_config c;
    if (ml_config_load(&c, path) != ML_OK) fail_msg("%s", ml_last_error());
    printf("  teacher %s: %lld params\n", c.name, (long long)ml_config_num_params(&c));
    assert_int_equal(ml_config_num_params(&c), 28024704);
    assert_string_equal(c.name, "mobilellm-28m-llama2tok");
    assert_int_equal(c.dialect, ML_DIALECT_LLAMA);
    assert_true(c.rope_theta == 500000.0f); /* from rope_parameters (transformers 5) */
    assert_int_equal(c.pad_token_id, -1);   /* null */
    assert_int_equal(c.max_position_embeddings, 4096);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.layer_repeat, 1);
}

/* ---- round trips ---------------------------------------------------------------------------- */

static void test_round_trip_presets(void **state) {
    (void)state;
    for (size_t i = 0; i < N_PRESETS; i++) {
        ml_config a, b, c;
        load_preset(&a, presets[i].name);
        char *t1 = NULL, *t2 = NULL;
        assert_int_equal(ml_config_to_json(&a, &t1), ML_OK);
        if (ml_config_from_json(&b, t1, a.name) != ML_OK) fail_msg("%s: %s", presets[i].name, ml_last_error());
        assert_config_equal(&a, &b);
        assert_string_equal(a.name, b.name);
        assert_int_equal(memcmp(&a, &b, sizeof a), 0); /* nothing else differs either */
        /* The preset file is the canonical serialization, and it is stable. */
        assert_int_equal(ml_config_to_json(&b, &t2), ML_OK);
        assert_string_equal(t1, t2);
        char *file = NULL;
        size_t size = 0;
        assert_int_equal(ml_read_file(preset_path(presets[i].name), &file, &size), ML_OK);
        assert_string_equal(file, t1);
        /* Re-reading parses to the same struct again. */
        assert_int_equal(ml_config_from_json(&c, t2, a.name), ML_OK);
        assert_config_equal(&a, &c);
        free(file);
        free(t1);
        free(t2);
    }
}

static void test_export_fields(void **state) {
    (void)state;
    ml_config c;
    char *t = NULL;

    load_preset(&c, "mobilellm-ls-125m");
    assert_int_equal(ml_config_to_json(&c, &t), ML_OK);
    assert_non_null(strstr(t, "\"LlamaForCausalLM\""));
    assert_non_null(strstr(t, "\"tie_word_embeddings\": true"));
    assert_null(strstr(t, "share_embedding")); /* HF llama ignores it */
    assert_non_null(strstr(t, "\"layer_sharing\": true"));
    assert_non_null(strstr(t, "\"layer_repeat\": 2"));
    assert_non_null(strstr(t, "\"rope_theta\": 10000.0"));
    assert_non_null(strstr(t, "\"rope_type\": \"default\""));
    assert_non_null(strstr(t, "\"rms_norm_eps\": 1e-05"));
    assert_non_null(strstr(t, "\"hidden_act\": \"silu\""));
    assert_non_null(strstr(t, "\"attention_bias\": false"));
    assert_non_null(strstr(t, "\"mlp_bias\": false"));
    assert_non_null(strstr(t, "\"torch_dtype\": \"float32\""));
    assert_non_null(strstr(t, "\"pad_token_id\": null"));
    free(t);

    load_preset(&c, "mobilellm-1.5b");
    assert_int_equal(ml_config_to_json(&c, &t), ML_OK);
    assert_non_null(strstr(t, "\"tie_word_embeddings\": false"));
    assert_non_null(strstr(t, "\"layer_sharing\": false"));
    assert_null(strstr(t, "layer_repeat"));
    free(t);

    load_preset(&c, "mobilellm-r1-140m");
    assert_int_equal(ml_config_to_json(&c, &t), ML_OK);
    assert_non_null(strstr(t, "\"Llama4ForCausalLM\""));
    assert_non_null(strstr(t, "\"model_type\": \"llama4_text\""));
    assert_non_null(strstr(t, "\"intermediate_size\": 2048"));
    assert_non_null(strstr(t, "\"intermediate_size_mlp\": 2048"));
    assert_non_null(strstr(t, "\"use_qk_norm\": true"));
    assert_non_null(strstr(t, "\"moe_layers\": []"));
    assert_non_null(strstr(t, "\"num_local_experts\": 0"));
    assert_non_null(strstr(t, "\"attn_temperature_tuning\": false"));
    assert_non_null(strstr(t, "\"rope_theta\": 8000000.0"));
    free(t);

    load_preset(&c, "tiny-pro");
    assert_int_equal(ml_config_to_json(&c, &t), ML_OK);
    assert_non_null(strstr(t, "\"MinistralForCausalLM\""));
    assert_non_null(strstr(t, "\"layer_types\": [\"sliding_attention\", \"full_attention\", \"sliding_attention\"]"));
    assert_non_null(strstr(t, "\"sliding_window\": 8"));
    free(t);

    /* A llama config with sliding layers goes out as ministral (HF llama would ignore them). */
    c = parse_ok("{\"model_type\":\"llama\",\"vocab_size\":259,\"hidden_size\":64,\"intermediate_size\":128,"
                 "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"sliding_window\":16,"
                 "\"layer_types\":[\"sliding_attention\",\"full_attention\"]}");
    assert_int_equal(c.dialect, ML_DIALECT_LLAMA);
    assert_int_equal(c.layer_sliding[0], 1);
    assert_int_equal(ml_config_to_json(&c, &t), ML_OK);
    assert_non_null(strstr(t, "\"model_type\": \"ministral\""));
    ml_config back;
    assert_int_equal(ml_config_from_json(&back, t, c.name), ML_OK);
    assert_int_equal(back.dialect, ML_DIALECT_MINISTRAL);
    back.dialect = ML_DIALECT_LLAMA;
    assert_config_equal(&c, &back);
    free(t);

    /* The hub's remote-code mobilellm dialect goes out as plain llama (tied via tie_word_embeddings). */
    c = parse_ok("{\"model_type\":\"mobilellm\",\"vocab_size\":32000,\"hidden_size\":576,\"intermediate_size\":1536,"
                 "\"num_hidden_layers\":30,\"num_attention_heads\":9,\"num_key_value_heads\":3,\"head_dim\":64,"
                 "\"share_embedding\":true,\"tie_word_embeddings\":false,\"layer_sharing\":true}");
    assert_int_equal(ml_config_to_json(&c, &t), ML_OK);
    assert_non_null(strstr(t, "\"model_type\": \"llama\""));
    assert_non_null(strstr(t, "\"tie_word_embeddings\": true"));
    assert_int_equal(ml_config_from_json(&back, t, c.name), ML_OK);
    assert_int_equal(back.dialect, ML_DIALECT_LLAMA);
    back.dialect = ML_DIALECT_MOBILELLM;
    assert_config_equal(&c, &back);
    free(t);

    /* to_json refuses an invalid struct instead of writing it. */
    c.num_kv_heads = 4;
    t = (char *)1;
    assert_int_equal(ml_config_to_json(&c, &t), ML_ERR_CONFIG);
    assert_null(t);
}

/* ---- dialects ------------------------------------------------------------------------------- */

#define V1_BODY                                                                                            \
    "\"vocab_size\":32000,\"hidden_size\":576,\"intermediate_size\":1536,\"num_hidden_layers\":30,"         \
    "\"num_attention_heads\":9,\"num_key_value_heads\":3"

static void test_dialect_llama_mobilellm(void **state) {
    (void)state;
    /* The hub's MobileLLM config: share_embedding wins over tie_word_embeddings false. */
    ml_config c = parse_ok("{\"model_type\":\"mobilellm\"," V1_BODY ",\"share_embedding\":true,"
                           "\"tie_word_embeddings\":false,\"layer_sharing\":false,\"rope_theta\":10000.0,"
                           "\"rope_scaling\":null,\"head_dim\":64,\"rms_norm_eps\":1e-05}");
    assert_int_equal(c.dialect, ML_DIALECT_MOBILELLM);
    assert_int_equal(c.tie_word_embeddings, 1);
    assert_int_equal(c.layer_repeat, 1);
    assert_int_equal(c.rope_pairing, ML_ROPE_HALF_SPLIT);
    assert_int_equal(ml_config_num_params(&c), 124635456);

    /* GitHub training config: llama with tie false and no share_embedding = untied. */
    c = parse_ok("{\"model_type\":\"llama\"," V1_BODY ",\"tie_word_embeddings\":false}");
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_int_equal(ml_config_num_params(&c), 124635456 + 32000LL * 576);
    assert_int_equal(c.head_dim, 64);                 /* derived: 576 / 9 */
    assert_int_equal(c.max_position_embeddings, 2048); /* LlamaConfig default */
    assert_true(c.rms_norm_eps == 1e-6f);
    assert_true(c.rope_theta == 10000.0f);
    assert_true(c.initializer_range == 0.02f);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.eos_token_id, 2);
    assert_int_equal(c.pad_token_id, -1);

    /* layer_sharing -> 2; our own integer layer_repeat also accepted. */
    c = parse_ok("{\"model_type\":\"llama\"," V1_BODY ",\"layer_sharing\":true,\"share_embedding\":true}");
    assert_int_equal(c.layer_repeat, 2);
    assert_int_equal(ml_config_applied_layers(&c), 60);
    c = parse_ok("{\"model_type\":\"llama\"," V1_BODY ",\"layer_repeat\":3}");
    assert_int_equal(c.layer_repeat, 3);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"layer_sharing\":true,\"layer_repeat\":1}", ML_ERR_CONFIG,
                "layer_repeat", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"layer_repeat\":0}", ML_ERR_CONFIG, "layer_repeat", NULL);

    /* eos list: first entry; null pad; kv heads default to heads. */
    c = parse_ok("{\"model_type\":\"llama\",\"vocab_size\":128256,\"hidden_size\":64,\"intermediate_size\":128,"
                 "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"bos_token_id\":128000,"
                 "\"eos_token_id\":[128001,128008,128009],\"pad_token_id\":null}");
    assert_int_equal(c.eos_token_id, 128001);
    assert_int_equal(c.bos_token_id, 128000);
    assert_int_equal(c.pad_token_id, -1);
    assert_int_equal(c.num_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
}

static void test_dialect_rope_parameters(void **state) {
    (void)state;
    ml_config c;
    /* transformers 5 */
    c = parse_ok("{\"model_type\":\"llama\"," V1_BODY ",\"rope_parameters\":{\"rope_theta\":500000.0,"
                 "\"rope_type\":\"default\"}}");
    assert_true(c.rope_theta == 500000.0f);
    /* both, equal */
    c = parse_ok("{\"model_type\":\"llama\"," V1_BODY ",\"rope_theta\":250000,\"rope_parameters\":{"
                 "\"rope_theta\":250000.0,\"rope_type\":\"default\"}}");
    assert_true(c.rope_theta == 250000.0f);
    /* keyed by layer type, same theta */
    c = parse_ok("{\"model_type\":\"ministral\"," V1_BODY ",\"sliding_window\":64,\"rope_parameters\":{"
                 "\"full_attention\":{\"rope_theta\":1e6,\"rope_type\":\"default\"},"
                 "\"sliding_attention\":{\"rope_theta\":1e6,\"rope_type\":\"default\"}}}");
    assert_true(c.rope_theta == 1.0e6f);
    /* legacy rope_scaling with the default type is plain RoPE */
    c = parse_ok("{\"model_type\":\"llama\"," V1_BODY ",\"rope_theta\":10000,\"rope_scaling\":{\"type\":\"default\"}}");
    assert_true(c.rope_theta == 10000.0f);

    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"rope_theta\":10000,\"rope_parameters\":{"
                "\"rope_theta\":500000.0,\"rope_type\":\"default\"}}",
                ML_ERR_CONFIG, "rope_theta", "disagree");
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"rope_parameters\":{\"rope_theta\":500000.0,"
                "\"rope_type\":\"yarn\",\"factor\":4.0}}",
                ML_ERR_UNSUPPORTED, "rope_parameters.rope_type", "yarn");
    parse_fails("{\"model_type\":\"ministral\"," V1_BODY ",\"rope_parameters\":{"
                "\"full_attention\":{\"rope_theta\":1e6,\"rope_type\":\"default\"},"
                "\"sliding_attention\":{\"rope_theta\":1e4,\"rope_type\":\"default\"}}}",
                ML_ERR_UNSUPPORTED, "rope_theta", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"rope_parameters\":\"default\"}", ML_ERR_CONFIG,
                "rope_parameters", NULL);
}

#define R1_BODY                                                                                           \
    "\"model_type\":\"llama4_text\",\"vocab_size\":259,\"hidden_size\":64,\"intermediate_size\":8192,"     \
    "\"intermediate_size_mlp\":96,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"    \
    "\"max_position_embeddings\":4096"

static void test_dialect_llama4_text(void **state) {
    (void)state;
    ml_config c;
    /* R1-like: dense, all RoPE, FFN width from intermediate_size_mlp. */
    c = parse_ok("{" R1_BODY ",\"num_hidden_layers\":4,\"no_rope_layers\":[1,1,1,1],\"moe_layers\":[],"
                 "\"num_local_experts\":0,\"use_qk_norm\":true,\"attention_chunk_size\":32768}");
    assert_int_equal(c.dialect, ML_DIALECT_LLAMA4_TEXT);
    assert_int_equal(c.intermediate_size, 96);
    assert_int_equal(c.rope_pairing, ML_ROPE_ADJACENT);
    assert_int_equal(c.use_qk_norm, 1);
    assert_true(c.rope_theta == 500000.0f); /* Llama4TextConfig default */
    assert_true(c.rms_norm_eps == 1e-5f);
    for (int i = 0; i < 4; i++) assert_int_equal(c.layer_rope[i], 1);

    /* NoPE layers (0 = no RoPE) are fine without temperature tuning. */
    c = parse_ok("{" R1_BODY ",\"num_hidden_layers\":4,\"no_rope_layers\":[1,0,1,1],\"moe_layers\":[],"
                 "\"attn_temperature_tuning\":false,\"use_qk_norm\":false,\"attention_chunk_size\":null}");
    assert_int_equal(c.layer_rope[0], 1);
    assert_int_equal(c.layer_rope[1], 0);
    assert_int_equal(c.use_qk_norm, 0);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":4,\"no_rope_layers\":[1,0,1,1],\"moe_layers\":[],"
                "\"attn_temperature_tuning\":true,\"attention_chunk_size\":null}",
                ML_ERR_UNSUPPORTED, "attn_temperature_tuning", "NoPE");
    /* Absent no_rope_layers: HF puts NoPE at every 4th layer, and tuning defaults on. */
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":4,\"moe_layers\":[],\"attention_chunk_size\":null}",
                ML_ERR_UNSUPPORTED, "attn_temperature_tuning", NULL);
    c = parse_ok("{" R1_BODY ",\"num_hidden_layers\":8,\"moe_layers\":[],\"attention_chunk_size\":null,"
                 "\"attn_temperature_tuning\":false}");
    for (int i = 0; i < 8; i++) assert_int_equal(c.layer_rope[i], (i + 1) % 4 != 0);
    assert_int_equal(c.use_qk_norm, 1); /* default */

    /* Chunked attention shorter than the context is refused; covering it is full attention. */
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"moe_layers\":[],"
                "\"attention_chunk_size\":1024}",
                ML_ERR_UNSUPPORTED, "attention_chunk_size", NULL);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"moe_layers\":[],"
                "\"max_position_embeddings\":32768}",
                ML_ERR_FORMAT, "max_position_embeddings", "twice");
    /* Default chunk (8192) shorter than the context: refused. */
    parse_fails("{\"model_type\":\"llama4_text\",\"vocab_size\":259,\"hidden_size\":64,"
                "\"intermediate_size_mlp\":96,\"num_attention_heads\":4,\"num_hidden_layers\":2,"
                "\"no_rope_layers\":[1,1],\"moe_layers\":[]}",
                ML_ERR_UNSUPPORTED, "attention_chunk_size", NULL);
    c = parse_ok("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"moe_layers\":[]}");
    assert_int_equal(c.layer_sliding[0], 0); /* default chunk 8192 covers 4096 positions */
    c = parse_ok("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"moe_layers\":[],"
                 "\"attention_chunk_size\":4096,\"layer_types\":[\"chunked_attention\",\"full_attention\"]}");
    assert_int_equal(c.layer_sliding[0], 0);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"moe_layers\":[],"
                "\"attention_chunk_size\":4096,\"layer_types\":[\"sliding_attention\",\"full_attention\"]}",
                ML_ERR_UNSUPPORTED, "layer_types[0]", "sliding_attention");

    /* MoE layers in any form are refused; experts declared with an explicit empty moe_layers (what
     * transformers' default Llama4TextConfig writes) leave every layer dense. */
    c = parse_ok("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"moe_layers\":[],"
                 "\"num_local_experts\":16,\"attention_chunk_size\":null}");
    assert_int_equal(c.num_layers, 2);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],"
                "\"num_local_experts\":16,\"interleave_moe_layer_step\":0,\"attention_chunk_size\":null}",
                ML_ERR_UNSUPPORTED, "num_local_experts", NULL);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"moe_layers\":[1],"
                "\"attention_chunk_size\":null}",
                ML_ERR_UNSUPPORTED, "moe_layers", NULL);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"attention_chunk_size\":null}",
                ML_ERR_UNSUPPORTED, "interleave_moe_layer_step", NULL);
    c = parse_ok("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,1],\"interleave_moe_layer_step\":0,"
                 "\"attention_chunk_size\":null}");
    assert_int_equal(c.num_layers, 2);

    /* intermediate_size_mlp is required: intermediate_size is the expert width. */
    parse_fails("{\"model_type\":\"llama4_text\",\"vocab_size\":259,\"hidden_size\":64,\"intermediate_size\":96,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"moe_layers\":[]}",
                ML_ERR_CONFIG, "intermediate_size_mlp", NULL);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":4,\"no_rope_layers\":[1,1],\"moe_layers\":[]}", ML_ERR_CONFIG,
                "no_rope_layers", NULL);
    parse_fails("{" R1_BODY ",\"num_hidden_layers\":2,\"no_rope_layers\":[1,2],\"moe_layers\":[]}", ML_ERR_CONFIG,
                "no_rope_layers[1]", NULL);
}

#define PRO_BODY                                                                                          \
    "\"model_type\":\"ministral\",\"vocab_size\":259,\"hidden_size\":64,\"intermediate_size\":128,"        \
    "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2"

static void test_dialect_ministral(void **state) {
    (void)state;
    ml_config c = parse_ok("{" PRO_BODY ",\"sliding_window\":8,"
                           "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"sliding_attention\"]}");
    assert_int_equal(c.dialect, ML_DIALECT_MINISTRAL);
    assert_int_equal(c.sliding_window, 8);
    assert_int_equal(c.layer_sliding[0], 1);
    assert_int_equal(c.layer_sliding[1], 0);
    assert_int_equal(c.layer_sliding[2], 1);
    assert_int_equal(c.rope_pairing, ML_ROPE_HALF_SPLIT);
    /* MinistralConfig defaults: window 4096 and every layer sliding. */
    c = parse_ok("{" PRO_BODY "}");
    assert_int_equal(c.sliding_window, 4096);
    for (int i = 0; i < 3; i++) assert_int_equal(c.layer_sliding[i], 1);
    /* null window: all full attention. */
    c = parse_ok("{" PRO_BODY ",\"sliding_window\":null}");
    assert_int_equal(c.sliding_window, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(c.layer_sliding[i], 0);

    parse_fails("{" PRO_BODY ",\"sliding_window\":null,"
                "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"sliding_attention\"]}",
                ML_ERR_CONFIG, "sliding_window", NULL);
    parse_fails("{" PRO_BODY ",\"sliding_window\":8,\"layer_types\":[\"sliding_attention\",\"full_attention\"]}",
                ML_ERR_CONFIG, "layer_types", NULL);
    parse_fails("{" PRO_BODY ",\"sliding_window\":8,"
                "\"layer_types\":[\"sliding_attention\",\"linear_attention\",\"full_attention\"]}",
                ML_ERR_UNSUPPORTED, "linear_attention", NULL);
    parse_fails("{" PRO_BODY ",\"sliding_window\":8,\"layer_types\":[\"sliding_attention\",3,\"full_attention\"]}",
                ML_ERR_CONFIG, "layer_types[1]", NULL);
}

/* ---- failures ------------------------------------------------------------------------------- */

static void test_bad_configs(void **state) {
    (void)state;
    parse_fails("{\"model_type\":\"gpt2\"," V1_BODY "}", ML_ERR_UNSUPPORTED, "model_type", "gpt2");
    parse_fails("{" V1_BODY "}", ML_ERR_CONFIG, "model_type", NULL);
    parse_fails("{\"model_type\":7," V1_BODY "}", ML_ERR_CONFIG, "model_type", NULL);
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":576,\"intermediate_size\":1536,"
                "\"num_hidden_layers\":30,\"num_attention_heads\":9,\"num_key_value_heads\":2}",
                ML_ERR_CONFIG, "num_key_value_heads", NULL);
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":32000,\"intermediate_size\":1536,"
                "\"num_hidden_layers\":30,\"num_attention_heads\":9}",
                ML_ERR_CONFIG, "hidden_size", "missing");
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":null,\"intermediate_size\":1536,"
                "\"num_hidden_layers\":30,\"num_attention_heads\":9}",
                ML_ERR_CONFIG, "hidden_size", NULL);
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":\"576\",\"intermediate_size\":1536,"
                "\"num_hidden_layers\":30,\"num_attention_heads\":9}",
                ML_ERR_CONFIG, "hidden_size", "string");
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":32000.5,\"hidden_size\":576,\"intermediate_size\":1536,"
                "\"num_hidden_layers\":30,\"num_attention_heads\":9}",
                ML_ERR_CONFIG, "vocab_size", "integer");
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"rms_norm_eps\":\"1e-5\"}", ML_ERR_CONFIG, "rms_norm_eps",
                NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"tie_word_embeddings\":1}", ML_ERR_CONFIG,
                "tie_word_embeddings", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32.0}}",
                ML_ERR_UNSUPPORTED, "rope_scaling", "llama3");
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"attention_bias\":true}", ML_ERR_UNSUPPORTED,
                "attention_bias", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"mlp_bias\":true}", ML_ERR_UNSUPPORTED, "mlp_bias", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"hidden_act\":\"gelu\"}", ML_ERR_UNSUPPORTED, "hidden_act",
                "gelu");
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"head_dim\":63}", ML_ERR_CONFIG, "head_dim", NULL);
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":100,\"intermediate_size\":128,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":3}",
                ML_ERR_CONFIG, "head_dim", NULL);
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":-5,\"hidden_size\":576,\"intermediate_size\":1536,"
                "\"num_hidden_layers\":30,\"num_attention_heads\":9}",
                ML_ERR_CONFIG, "vocab_size", NULL);
    parse_fails("{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":64,\"intermediate_size\":128,"
                "\"num_hidden_layers\":300,\"num_attention_heads\":4}",
                ML_ERR_CONFIG, "num_hidden_layers", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"eos_token_id\":32000}", ML_ERR_CONFIG, "eos_token_id",
                NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"eos_token_id\":[2,\"x\"]}", ML_ERR_CONFIG, "eos_token_id",
                NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"max_position_embeddings\":0}", ML_ERR_CONFIG,
                "max_position_embeddings", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"vocab_size\":5}", ML_ERR_FORMAT, "vocab_size", "twice");
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"rope_theta\":-1}", ML_ERR_CONFIG, "rope_theta", NULL);
    parse_fails("{\"model_type\":\"llama\"," V1_BODY ",\"rope_theta\":1e999}", ML_ERR_CONFIG, "rope_theta", NULL);
    /* malformed JSON and non-objects */
    parse_fails("{\"model_type\": \"llama\",\n \"vocab_size\": 32000,,\n}", ML_ERR_FORMAT, "malformed JSON",
                "line 2");
    parse_fails("", ML_ERR_FORMAT, "malformed", NULL);
    parse_fails("[1, 2]", ML_ERR_FORMAT, "object", NULL);
    parse_fails("{\"model_type\":\"llama\"} trailing", ML_ERR_FORMAT, "malformed", NULL);
}

static void test_load_files(void **state) {
    (void)state;
    const char *dir = ml_test_tmpdir("test_config");
    assert_non_null(dir);
    ml_config c;
    const char *missing = ml_test_path(dir, "no-such-config.json");
    assert_int_equal(ml_config_load(&c, missing), ML_ERR_IO);
    printf("  [missing] %s\n", ml_last_error());
    assert_non_null(strstr(ml_last_error(), "no-such-config.json"));

    const char *bad = ml_test_path(dir, "bad.json");
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":\"wide\"}", f);
    fclose(f);
    assert_int_equal(ml_config_load(&c, bad), ML_ERR_CONFIG);
    printf("  [bad file] %s\n", ml_last_error());
    assert_non_null(strstr(ml_last_error(), bad));
    assert_non_null(strstr(ml_last_error(), "hidden_size"));

    /* A config.json inside a folder is named after the folder; a failed parse leaves c alone. */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/my-model", dir);
    assert_int_equal(ml_test_run("mkdir -p '%s' && cp '%s' '%s/config.json'", sub, preset_path("tiny-r1"), sub), 0);
    assert_int_equal(ml_config_load(&c, ml_test_path(sub, "config.json")), ML_OK);
    assert_string_equal(c.name, "my-model");
    ml_config before = c;
    assert_int_equal(ml_config_load(&c, bad), ML_ERR_CONFIG);
    assert_int_equal(memcmp(&before, &c, sizeof c), 0);

    /* A directory is not a config. */
    assert_int_equal(ml_config_load(&c, dir), ML_ERR_IO);
    printf("  [directory] %s\n", ml_last_error());
}

/* Every truncation and many single-byte corruptions of a preset fail cleanly (or parse to a valid
 * config), never crash: the ASan build runs this too. */
static void test_corrupted_inputs(void **state) {
    (void)state;
    const char *names[] = {"tiny-pro", "tiny-r1", "mobilellm-ls-125m"};
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < 3; k++) {
        char *text = NULL;
        size_t n = 0;
        assert_int_equal(ml_read_file(preset_path(names[k]), &text, &n), ML_OK);
        char *buf = malloc(n + 1);
        assert_non_null(buf);
        ml_config c;
        for (size_t cut = 0; cut < n; cut++) {
            memcpy(buf, text, cut);
            buf[cut] = 0;
            /* Only whitespace may be dropped without breaking the object. */
            ml_status st = ml_config_from_json(&c, buf, "cut.json");
            if (cut < n - 2) assert_int_not_equal(st, ML_OK);
        }
        const char junk[] = "\"{}[],:0-9eE.ntf\\ \x01\xff";
        for (int trial = 0; trial < 2000; trial++) {
            memcpy(buf, text, n + 1);
            for (int m = 0; m < 3; m++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                buf[rng % n] = junk[(rng >> 32) % (sizeof junk - 1)];
            }
            if (ml_config_from_json(&c, buf, "mutated.json") == ML_OK) {
                char *t = NULL;
                assert_int_equal(ml_config_to_json(&c, &t), ML_OK); /* valid means exportable */
                free(t);
            } else {
                assert_true(strlen(ml_last_error()) > 0);
            }
        }
        free(buf);
        free(text);
    }
}

/* ---- validate, params, FLOPs ---------------------------------------------------------------- */

static ml_config tiny_struct(void) {
    ml_config c;
    memset(&c, 0, sizeof c);
    c.dialect = ML_DIALECT_LLAMA;
    c.vocab_size = 259;
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_layers = 2;
    c.num_heads = 4;
    c.max_position_embeddings = 128;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.initializer_range = 0.02f;
    c.layer_repeat = 1;
    c.layer_rope[0] = c.layer_rope[1] = 1;
    c.bos_token_id = c.eos_token_id = c.pad_token_id = -1;
    return c;
}

static void expect_invalid(ml_config c, ml_status want, const char *needle) {
    ml_status st = ml_config_validate(&c);
    printf("  [validate] %s\n", ml_last_error());
    assert_int_equal(st, want);
    if (!strstr(ml_last_error(), needle)) fail_msg("message lacks \"%s\": %s", needle, ml_last_error());
}

static void test_validate(void **state) {
    (void)state;
    ml_config c = tiny_struct();
    assert_int_equal(ml_config_validate(&c), ML_OK);
    assert_int_equal(c.head_dim, 16);    /* derived */
    assert_int_equal(c.num_kv_heads, 4); /* derived */
    c.layer_rope[7] = 1;                 /* beyond num_layers: cleared */
    c.sliding_window = 32;               /* no sliding layer: dropped */
    assert_int_equal(ml_config_validate(&c), ML_OK);
    assert_int_equal(c.layer_rope[7], 0);
    assert_int_equal(c.sliding_window, 0);

    ml_config b;
    b = tiny_struct(), b.num_kv_heads = 3;
    expect_invalid(b, ML_ERR_CONFIG, "num_key_value_heads");
    b = tiny_struct(), b.hidden_size = 0;
    expect_invalid(b, ML_ERR_CONFIG, "hidden_size");
    b = tiny_struct(), b.intermediate_size = -1;
    expect_invalid(b, ML_ERR_CONFIG, "intermediate_size");
    b = tiny_struct(), b.head_dim = 15;
    expect_invalid(b, ML_ERR_CONFIG, "head_dim");
    b = tiny_struct(), b.num_layers = ML_MAX_LAYERS + 1;
    expect_invalid(b, ML_ERR_CONFIG, "ML_MAX_LAYERS");
    b = tiny_struct(), b.layer_repeat = 0;
    expect_invalid(b, ML_ERR_CONFIG, "layer_repeat");
    b = tiny_struct(), b.layer_sliding[1] = 1;
    expect_invalid(b, ML_ERR_CONFIG, "sliding_window");
    b = tiny_struct(), b.rms_norm_eps = 0.0f;
    expect_invalid(b, ML_ERR_CONFIG, "rms_norm_eps");
    b = tiny_struct(), b.pad_token_id = 259;
    expect_invalid(b, ML_ERR_CONFIG, "pad_token_id");
    /* What a dialect cannot express is rejected, so every valid config can be exported. */
    b = tiny_struct(), b.use_qk_norm = 1;
    expect_invalid(b, ML_ERR_CONFIG, "use_qk_norm");
    b = tiny_struct(), b.layer_rope[1] = 0;
    expect_invalid(b, ML_ERR_CONFIG, "layer_rope");
    b = tiny_struct(), b.rope_pairing = ML_ROPE_ADJACENT;
    expect_invalid(b, ML_ERR_CONFIG, "rope_pairing");
    b = tiny_struct(), b.dialect = ML_DIALECT_LLAMA4_TEXT;
    expect_invalid(b, ML_ERR_CONFIG, "rope_pairing");
    b.rope_pairing = ML_ROPE_ADJACENT, b.sliding_window = 4, b.layer_sliding[0] = 1;
    expect_invalid(b, ML_ERR_CONFIG, "llama4_text");
    b.layer_sliding[0] = 0, b.layer_rope[0] = 0, b.use_qk_norm = 1;
    assert_int_equal(ml_config_validate(&b), ML_OK); /* NoPE + QK-norm is Llama-4 */
}

static void test_flops(void **state) {
    (void)state;
    ml_config c;
    load_preset(&c, "tiny-pro"); /* 3 layers: sliding 8, full, sliding 8; C=64 H=4 kv=2 hd=16 F=128 V=259 */
    const double matmul_block = 64.0 * 64 + 2 * 64.0 * 32 + 64.0 * 64 + 3 * 64.0 * 128;
    const double head = 259.0 * 64;
    int T = 32;
    /* full: mean over t=1..32 of t = 16.5; sliding 8: (1+..+8 + 24*8)/32 = (36 + 192)/32 = 7.125 */
    double attn = 16.5 + 2 * 7.125;
    double want = 6.0 * (3 * matmul_block + head) + 12.0 * 4 * 16 * attn;
    assert_float_equal(ml_config_train_flops_per_token(&c, T), want, 1e-6 * want);
    /* A window at least T long is the same as full attention. */
    double full3 = 6.0 * (3 * matmul_block + head) + 12.0 * 4 * 16 * (3 * 4.5);
    assert_float_equal(ml_config_train_flops_per_token(&c, 8), full3, 1e-6 * full3);

    /* Layer sharing doubles the block part (matmuls and attention), not the head. */
    ml_config v1;
    load_preset(&v1, "tiny-v1"); /* repeat 2, 2 layers, F=128 */
    double blk = 6.0 * matmul_block + 12.0 * 64 * (T + 1) / 2.0;
    double want_v1 = 6.0 * head + 4 * blk;
    assert_float_equal(ml_config_train_flops_per_token(&v1, T), want_v1, 1e-6 * want_v1);
    v1.layer_repeat = 1;
    assert_float_equal(ml_config_train_flops_per_token(&v1, T), 6.0 * head + 2 * blk, 1e-6 * want_v1);

    /* MobileLLM-125M at T=2048: about 6N plus attention (llm.c-style sanity check). */
    load_preset(&c, "mobilellm-125m");
    double f = ml_config_train_flops_per_token(&c, 2048);
    double n_matmul = (double)ml_config_num_params(&c) - 30 * 2 * 576 - 576; /* minus norms */
    double expect = 6.0 * n_matmul + 12.0 * 30 * 9 * 64 * 1024.5;
    printf("  mobilellm-125m: %.4g training FLOPs/token at T=2048\n", f);
    assert_float_equal(f, expect, 1e-6 * expect);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preset_param_counts),
        cmocka_unit_test(test_preset_shapes),
        cmocka_unit_test(test_teacher_config),
        cmocka_unit_test(test_round_trip_presets),
        cmocka_unit_test(test_export_fields),
        cmocka_unit_test(test_dialect_llama_mobilellm),
        cmocka_unit_test(test_dialect_rope_parameters),
        cmocka_unit_test(test_dialect_llama4_text),
        cmocka_unit_test(test_dialect_ministral),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_load_files),
        cmocka_unit_test(test_corrupted_inputs),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_flops),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
