#include "data/utf8.h"

#include <stdlib.h>
#include <string.h>

/* Length of the well-formed sequence starting at s[0], or -k where k >= 1 is the length of
 * the maximal ill-formed subpart to replace by one U+FFFD (Unicode 3.9, Table 3-7: a lead
 * byte followed by the longest run of bytes that could still start a well-formed sequence). */
static int seq_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else return -1;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) return -k;
        uint8_t b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
    }
    return need + 1;
}

size_t ml_utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int l = seq_len(s + i, n - i);
        if (l < 0) return i;
        i += (size_t)l;
    }
    return n;
}

ml_status ml_utf8_sanitize(const uint8_t *s, size_t n, char **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    if (n > (SIZE_MAX - 1) / 3) return ml_fail(ML_ERR_NOMEM, "text of %zu bytes is too large", n);
    char *o = malloc(3 * n + 1); /* each replaced byte grows to at most 3 */
    if (!o) return ml_fail(ML_ERR_NOMEM, "out of memory sanitising %zu bytes of text", n);
    size_t i = 0, m = 0;
    while (i < n) {
        int l = seq_len(s + i, n - i);
        if (l > 0) {
            memcpy(o + m, s + i, (size_t)l);
            m += (size_t)l;
            i += (size_t)l;
        } else {
            memcpy(o + m, "\xEF\xBF\xBD", 3);
            m += 3;
            i += (size_t)-l;
        }
    }
    o[m] = 0;
    *out = o;
    *out_n = m;
    return ML_OK;
}

int ml_utf8_put(uint32_t cp, char *buf) {
    unsigned char *b = (unsigned char *)buf;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int ml_utf8_get(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    int l = seq_len(s, n);
    if (l <= 0) return 0;
    uint32_t c = l == 1 ? s[0] : l == 2 ? (s[0] & 0x1Fu) : l == 3 ? (s[0] & 0x0Fu) : (s[0] & 0x07u);
    for (int k = 1; k < l; k++) c = (c << 6) | (s[k] & 0x3Fu);
    *cp = c;
    return l;
}
