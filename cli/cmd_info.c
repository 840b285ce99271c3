#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "model/checkpoint.h"
#include "quant/quant.h"

int ml_cmd_info(int argc, char **argv) {
    int tensors = 0;
    ml_opt opts[] = {{"tensors", ML_OPT_FLAG, &tensors, "also list every tensor with its shape", 0, 0}};
    if (argc < 2 || argv[1][0] == '-') {
        int rc = ml_args_parse("info", "CKPT [--tensors]", opts, 1, argc, argv);
        if (rc > 0) return 0;
        fprintf(stderr, "mobilellm info: missing checkpoint path (see --help)\n");
        return 2;
    }
    const char *path = argv[1];
    int rc = ml_args_parse("info", "CKPT [--tensors]", opts, 1, argc - 1, argv + 1);
    if (rc) return rc > 0 ? 0 : 2;
    ml_model m;
    ml_train_state st;
    if (ml_checkpoint_load(path, &m, &st) != ML_OK) return ml_cli_fail("info");
    const ml_config *c = &m.cfg;
    int sliding = 0;
    for (int l = 0; l < c->num_layers; l++) sliding += c->layer_sliding[l];
    printf("checkpoint   %s\n", path);
    printf("model        %s (%s dialect)\n", c->name, ml_dialect_name(c->dialect));
    printf("parameters   %lld\n", (long long)ml_config_num_params(c));
    printf("shape        %d layers x %d applications, hidden %d, FFN %d, heads %d/%d x %d, vocab %d\n",
           c->num_layers, c->layer_repeat, c->hidden_size, c->intermediate_size, c->num_heads, c->num_kv_heads,
           c->head_dim, c->vocab_size);
    printf("embeddings   %s\n", c->tie_word_embeddings ? "tied" : "untied");
    printf("rope         theta %g, %s pairs%s\n", c->rope_theta,
           c->rope_pairing == ML_ROPE_HALF_SPLIT ? "half-split" : "adjacent", c->use_qk_norm ? ", QK-norm" : "");
    if (sliding) printf("attention    %d sliding-window layers (window %d), %d global\n", sliding, c->sliding_window, c->num_layers - sliding);
    if (m.quant[0])
        printf("quantized    %s (latent fp32 weights stored; %d learned scale tensors)\n", m.quant, ml_quant_num_scales(&m));
    printf("training     step %lld, %lld tokens seen, optimizer %s\n", (long long)st.step, (long long)st.tokens_seen,
           st.optimizer[0] ? st.optimizer : "none stored");
    if (tensors)
        for (int i = 0; i < m.n_params; i++) {
            const ml_param *p = &m.params[i];
            if (p->ndim == 2)
                printf("  %-56s [%lld, %lld]\n", p->name, (long long)p->shape[0], (long long)p->shape[1]);
            else
                printf("  %-56s [%lld]\n", p->name, (long long)p->shape[0]);
        }
    ml_train_state_free(&st);
    ml_model_free(&m);
    return 0;
}
