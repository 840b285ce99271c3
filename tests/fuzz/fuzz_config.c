/* libFuzzer target for config.json (model/config_json.c, model/config.c): whatever parses must validate,
 * write back to JSON and parse again to the same config; small models are also built (the memory check in
 * model creation bounds the rest). Seeds: tests/fuzz/corpus/config. */
#include "fuzz_util.h"

#include "model/config.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    ml_config c;
    ml_status s = ml_config_from_json(&c, text, "fuzz");
    free(text);
    if (s != ML_OK) return 0;
    FUZZ_ASSERT(c.vocab_size > 0 && c.hidden_size > 0 && c.num_heads > 0 && c.num_kv_heads > 0 && c.head_dim > 0);
    int64_t np = ml_config_num_params(&c);
    FUZZ_ASSERT(np > 0);
    (void)ml_config_train_flops_per_token(&c, 64);
    char *json = NULL;
    if (ml_config_to_json(&c, &json) == ML_OK) {
        ml_config c2;
        FUZZ_ASSERT(ml_config_from_json(&c2, json, "fuzz round trip") == ML_OK);
        FUZZ_ASSERT(ml_config_num_params(&c2) == np);
        free(json);
    }
    if (np <= (1 << 20)) {
        ml_model m;
        if (ml_model_create(&m, &c) == ML_OK) ml_model_free(&m);
    }
    return 0;
}
