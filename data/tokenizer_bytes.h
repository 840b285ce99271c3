/* The byte tokenizer: byte b is id b; BOS 256, EOS 257, PAD 258; vocab 259; fingerprint
 * "bytes-v1". Needs no file, so the project's own demo and tests run anywhere. */
#ifndef ML_DATA_TOKENIZER_BYTES_H
#define ML_DATA_TOKENIZER_BYTES_H

#include "data/tokenizer.h"

#define ML_BYTES_BOS 256
#define ML_BYTES_EOS 257
#define ML_BYTES_PAD 258
#define ML_BYTES_VOCAB 259
#define ML_BYTES_FINGERPRINT "bytes-v1"

ml_status ml_tokenizer_bytes_new(ml_tokenizer **t);

#endif
