#include "interop/model_load.h"

#include <sys/stat.h>

#include "interop/hf_checkpoint.h"
#include "model/checkpoint.h"
#include "quant/quant.h"

ml_status ml_model_load_any(const char *path, ml_model *m) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return ml_hf_import(m, path, NULL);
    ML_TRY(ml_checkpoint_load(path, m, NULL));
    /* a quantized checkpoint computes with its quantized weights */
    ml_status s = ml_quant_install_stored(m);
    if (s != ML_OK) {
        ml_model_free(m);
        return ml_fail_context(s, "loading %s", path);
    }
    return ML_OK;
}
