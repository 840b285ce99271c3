#include <stdio.h>

#include "common/sysinfo.h"
#include "model/ops/gemm.h"

int ml_cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char engines[1024], cpu[160];
    ml_gemm_engines_describe(engines, sizeof engines);
    ml_cpu_features_describe(cpu, sizeof cpu);
    printf("mobilellm 0.1.0\nCPU features: %s\nGEMM engines (--gemm-engine, ML_GEMM_ENGINE):\n%s\n", cpu, engines);
    const char *warn = ml_blas_kernel_warning();
    if (warn) printf("%s\n", warn);
    return 0;
}
