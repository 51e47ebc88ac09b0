#include "signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The only mutable globals of the programs: what a signal handler may touch. */
static volatile sig_atomic_t received;
static const char *volatile stop_message;

static void on_stop(int sig)
{
    if (received) {
        /* Second signal: the user insists. The library writes checkpoints
         * atomically, so dying now leaves the previous checkpoint intact. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    received = sig;
    if (stop_message) {
        ssize_t ignored = write(STDERR_FILENO, stop_message, strlen(stop_message));
        (void)ignored;
    }
}

void stop_signals_install(const char *message)
{
    stop_message = message;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a signal during a write or read must not make it fail. */
    sa.sa_flags = SA_RESTART;
    const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++) {
        /* A signal ignored when the program started stays ignored, as the
         * starter meant: nohup ignores SIGHUP, and a shell starts the
         * background jobs of a script with SIGINT ignored. */
        struct sigaction old;
        if (sigaction(stop_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        sigaction(stop_signals[i], &sa, NULL);
    }
}

void stop_signals_set_message(const char *message) { stop_message = message; }

int stop_signal_received(void) { return received; }

const char *stop_signal_name(int sig)
{
    return sig == SIGINT    ? "SIGINT"
           : sig == SIGTERM ? "SIGTERM"
           : sig == SIGHUP  ? "SIGHUP"
                            : "a signal";
}
