#include "interop/model_load.h"

#include <sys/stat.h>

#include "interop/hf_checkpoint.h"
#include "model/checkpoint.h"
#include "quant/quant.h"

/* the stored recipe, with another activation grid when act is given */
static ml_status install(ml_model *m, const char *act) {
    if (!act) return ml_quant_install_stored(m);
    if (!m->quant[0]) return ml_fail(ML_ERR_ARG, "--act %s needs a quantized checkpoint", act);
    ml_quant_recipe r;
    char lin[32], emb[32];
    ML_TRY(ml_quant_recipe_from_string(&r, m->quant));
    ML_TRY(ml_quant_recipe_parse(&r, ml_qweight_name(&r.linear, lin, sizeof lin),
                                 ml_qweight_name(&r.embedding, emb, sizeof emb), act));
    return ml_quant_install(m, &r);
}

ml_status ml_model_load_any_act(const char *path, ml_model *m, const char *act) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (act) return ml_fail(ML_ERR_ARG, "--act %s needs a quantized checkpoint, not a Hugging Face directory", act);
        return ml_hf_import(m, path, NULL);
    }
    ML_TRY(ml_checkpoint_load(path, m, NULL));
    /* a quantized checkpoint computes with its quantized weights */
    ml_status s = install(m, act);
    if (s != ML_OK) {
        ml_model_free(m);
        return ml_fail_context(s, "loading %s", path);
    }
    return ML_OK;
}

ml_status ml_model_load_any(const char *path, ml_model *m) { return ml_model_load_any_act(path, m, NULL); }
