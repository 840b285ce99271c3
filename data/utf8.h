/* UTF-8 helpers shared by the tokenizers. */
#ifndef ML_DATA_UTF8_H
#define ML_DATA_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Length of the longest valid UTF-8 prefix of s[0..n) (n when all of it is valid). "Valid" is
 * Unicode's well-formed UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
size_t ml_utf8_valid_prefix(const uint8_t *s, size_t n);

/* Copy s[0..n) to a malloc'd buffer, replacing each maximal ill-formed subpart by U+FFFD
 * (EF BF BD), exactly as Python's bytes.decode('utf-8', errors='replace') does. *out_n gets
 * the length; the buffer is NUL-terminated. */
ml_status ml_utf8_sanitize(const uint8_t *s, size_t n, char **out, size_t *out_n);

/* Write code point cp as UTF-8 into buf (at least 4 bytes); returns the length (0 if cp is
 * not a scalar value). */
int ml_utf8_put(uint32_t cp, char *buf);

/* Decode one code point from a valid UTF-8 string at s (n bytes left); returns its length
 * (0 on ill-formed input) and the code point in *cp. */
int ml_utf8_get(const uint8_t *s, size_t n, uint32_t *cp);

#endif
