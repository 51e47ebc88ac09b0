/* DIR/train.state, the run state file agave-train wrote before libagave 1.0
 * (the checkpoint holds the run state since then: agave_model_run_state).
 * Read only, so that a run directory of an older version still resumes with
 * the batches an uninterrupted run would have seen. */
#ifndef AGAVE_EXAMPLES_LEGACY_STATE_H
#define AGAVE_EXAMPLES_LEGACY_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "agave.h"

/* Reads path (a file of a run directory: no link, no FIFO) and fills *s with
 * the run's settings and the data position it recorded for the checkpoint at
 * step/rejected (the model's counts). Returns 1 and sets *s; 0 when the file
 * does not exist (*err empty) or has no position for that checkpoint (*err
 * says so, *s still holds the settings with epoch = index = 0 and
 * *have_settings 1); -1 with a sentence in err when it cannot be read or is
 * damaged. *s is not validated: agave_model_set_run_state does that. */
int legacy_state_read(const char *path, long long step, long long rejected, agave_run_state *s,
                      int *have_settings, char *err, size_t len);

#endif
