#include "common/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

void ml_atomic_cleanup_all(void); /* common/atomic_file.c */

static volatile sig_atomic_t stop_count, stop_signal, graceful;

static void on_signal(int sig) {
    if (!stop_count) stop_signal = sig;
    stop_count++;
    if (stop_count >= 2 || !graceful) {
        ml_atomic_cleanup_all();
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

void ml_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A write past `ulimit -f` must fail with EFBIG and be reported (the atomic writer then removes
     * its temporary), not kill the process with SIGXFSZ and leave the temporary behind. */
    signal(SIGXFSZ, SIG_IGN);
}

void ml_signals_set_graceful(int on) { graceful = on != 0; }

int ml_stop_requested(void) { return stop_count > 0; }
int ml_stop_signal(void) { return stop_signal; }
void ml_request_stop(void) { stop_count = 1; }
