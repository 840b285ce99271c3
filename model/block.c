#include "model/block.h"

#include "common/prof.h"
#include "model/linear.h"
#include "model/ops/ops.h"

void ml_block_forward(const ml_model *m, int a, const ml_block_io *io, ml_block_acts *x, float *out, float *ffn_h,
                      int to_output) {
    const ml_config *c = &m->cfg;
    const int B = io->B, T = io->T, N = B * T, C = c->hidden_size, F = c->intermediate_size, H = c->num_heads,
              KV = c->num_kv_heads, hd = c->head_dim;
    const int half_split = c->rope_pairing == ML_ROPE_HALF_SPLIT;
    const int l = a / c->layer_repeat;
    const ml_gemm_operand ln1 = {x->ln1, x->ln1_16, C}, ln2 = {x->ln2, x->ln2_16, C};
    ML_PROFILE(ML_PROF_RMSNORM_FWD) {
        if (x->ln1_16)
            ml_rmsnorm_forward_b16(x->ln1_16, x->rstd1, x->resid_in, m->w.layer[l].attn_norm, N, C, c->rms_norm_eps);
        else
            ml_rmsnorm_forward(x->ln1, x->rstd1, x->resid_in, m->w.layer[l].attn_norm, N, C, c->rms_norm_eps);
    }
    ML_PROFILE(ML_PROF_QKV_FWD) {
        ml_linear_forward_in(m, ML_P_WQ, l, x->q, ln1, N);
        ml_linear_forward_in(m, ML_P_WK, l, x->k, ln1, N);
        ml_linear_forward_in(m, ML_P_WV, l, x->v, ln1, N);
    }
    if (c->layer_rope[l]) {
        ML_PROFILE(ML_PROF_ROPE_FWD) {
            ml_rope_apply(x->q, io->pos, io->rope_cos, io->rope_sin, N, T, H, hd, half_split, 0);
            ml_rope_apply(x->k, io->pos, io->rope_cos, io->rope_sin, N, T, KV, hd, half_split, 0);
        }
        if (c->use_qk_norm) ML_PROFILE(ML_PROF_QKNORM_FWD) {
                ml_headnorm_forward(x->q, x->q_rstd, N, H, hd, c->rms_norm_eps);
                ml_headnorm_forward(x->k, x->k_rstd, N, KV, hd, c->rms_norm_eps);
            }
    }
    ML_PROFILE(ML_PROF_ATTN_FWD) {
        if (io->kv) { /* the chunk's keys join the cached ones; its queries are the last T of them */
            int first;
            ml_kv_cache_append(io->kv, a, io->kv_start, T, x->k, x->v, &first);
            const int Tk = io->kv_start + T - first;
            const ml_attn_dims d = {1, T, Tk, Tk - T, H, KV, hd, ml_layer_window(c, l), m->attn_kernel};
            ml_attention_forward(x->att, x->lse, x->q, io->kv->k[a], io->kv->v[a], NULL, &d, io->attn_work);
        } else {
            ml_attn_dims d = ml_attn_dims_self(B, T, H, KV, hd, ml_layer_window(c, l));
            d.kernel = m->attn_kernel;
            ml_attention_forward(x->att, x->lse, x->q, x->k, x->v, io->doc, &d, io->attn_work);
        }
    }
    ML_PROFILE(ML_PROF_O_FWD) ml_linear_forward(m, ML_P_WO, l, x->resid_mid, x->att, N);
    ML_PROFILE(ML_PROF_RESIDUAL) {
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < (int64_t)N * C; i++) x->resid_mid[i] += x->resid_in[i];
    }
    ML_PROFILE(ML_PROF_RMSNORM_FWD) {
        if (x->ln2_16)
            ml_rmsnorm_forward_b16(x->ln2_16, x->rstd2, x->resid_mid, m->w.layer[l].mlp_norm, N, C, c->rms_norm_eps);
        else
            ml_rmsnorm_forward(x->ln2, x->rstd2, x->resid_mid, m->w.layer[l].mlp_norm, N, C, c->rms_norm_eps);
    }
    ML_PROFILE(ML_PROF_GATE_UP_FWD) {
        if (x->gate16) {
            ml_linear_forward_to_bf16(m, ML_P_WGATE, l, x->gate16, ln2, N);
            ml_linear_forward_to_bf16(m, ML_P_WUP, l, x->up16, ln2, N);
        } else {
            ml_linear_forward_in(m, ML_P_WGATE, l, x->gate, ln2, N);
            ml_linear_forward_in(m, ML_P_WUP, l, x->up, ln2, N);
        }
    }
    if (!to_output) return;
    ML_PROFILE(ML_PROF_SWIGLU_FWD) {
        if (x->gate16)
            ml_swiglu_forward_b16((uint16_t *)ffn_h, x->gate16, x->up16, (int64_t)N * F);
        else
            ml_swiglu_forward(ffn_h, x->gate, x->up, (int64_t)N * F);
    }
    const ml_gemm_operand h = x->gate16 ? (ml_gemm_operand){NULL, (const uint16_t *)ffn_h, F} : ml_gemm_f32(ffn_h, F);
    ML_PROFILE(ML_PROF_DOWN_FWD) ml_linear_forward_in(m, ML_P_WDOWN, l, out, h, N);
    ML_PROFILE(ML_PROF_RESIDUAL) {
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < (int64_t)N * C; i++) out[i] += x->resid_mid[i];
    }
}
