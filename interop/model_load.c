#include "interop/model_load.h"

#include <sys/stat.h>

#include "interop/hf_checkpoint.h"
#include "model/checkpoint.h"

ml_status ml_model_load_any(const char *path, ml_model *m) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return ml_hf_import(m, path, NULL);
    return ml_checkpoint_load(path, m, NULL);
}
