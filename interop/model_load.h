/* Loading a model for use (weights only) from whatever the user points at: a native checkpoint
 * (.h5) or a Hugging Face directory (config.json + safetensors). It sits above both formats'
 * bridges, so the model layer knows neither. A quantized checkpoint (quant/quant.h) comes with its
 * weight and activation transforms installed: logits, evaluation, sampling, pass-key and teachers
 * compute with the quantized weights. (ml_checkpoint_load alone gives the latent weights.) */
#ifndef ML_INTEROP_MODEL_LOAD_H
#define ML_INTEROP_MODEL_LOAD_H

#include "model/model.h"

ml_status ml_model_load_any(const char *path, ml_model *m);
/* The same with another activation grid (none | q8_0 | int8-token) than the quantized checkpoint's stored one; act
 * NULL: as stored. Refused for a model that is not a quantized checkpoint. */
ml_status ml_model_load_any_act(const char *path, ml_model *m, const char *act);

#endif
