#include <stdio.h>

#include "common/sysinfo.h"

int ml_cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char blas[256];
    ml_blas_describe(blas, sizeof blas);
    printf("mobilellm 0.1.0\n%s\n", blas);
    return 0;
}
