/* SIGINT, SIGTERM and SIGHUP as a request to stop: the first one only sets a
 * flag that the program checks between steps (it then saves and exits); a
 * second one ends the program at once with the default action. */
#ifndef AGAVE_EXAMPLES_SIGNALS_H
#define AGAVE_EXAMPLES_SIGNALS_H

/* Installs the handlers, except for a signal that was ignored when the
 * program started (nohup's SIGHUP; SIGINT in a script's background job),
 * which stays ignored. Programs call it first thing, so that a signal during
 * start-up is a request to stop too, not a kill. message (a static string, may be NULL) is written
 * to stderr when the first signal arrives, so that the user knows the
 * program heard it even if the current step takes a while. */
void stop_signals_install(const char *message);
/* Replaces the message (NULL: none). Programs install the handlers silently
 * before start-up and set the message once the work it describes begins, so
 * that a signal during start-up or shutdown (mpirun stopping the ranks after
 * an error) prints nothing misleading. */
void stop_signals_set_message(const char *message);
/* The first stop signal received (SIGINT, ...), or 0. */
int stop_signal_received(void);
/* "SIGINT", "SIGTERM", "SIGHUP", or "a signal", for messages. */
const char *stop_signal_name(int sig);

#endif
