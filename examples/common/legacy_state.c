/* The pre-1.0 DIR/train.state (legacy_state.h): a magic line, the run's
 * settings, and the data positions of the last two checkpoints (two, because
 * it was written before the checkpoint it described). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "legacy_state.h"

#define LEGACY_STATE_MAGIC "agave-train state 1"

typedef struct legacy_position {
    long long step, rejected;
    uint64_t epoch, index;
} legacy_position;

typedef struct legacy_file {
    agave_run_state run;   /* the settings; epoch and index 0 */
    int n_positions;
    legacy_position positions[2];
} legacy_file;

/* 0 with a sentence in err if the text is not a complete state file. */
static int parse(char *text, legacy_file *f, char *err, size_t len)
{
    int line_no = 0, have[4] = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        line_no++;
        legacy_position p;
        long long v;
        if (line_no == 1 && strcmp(line, LEGACY_STATE_MAGIC) == 0)
            continue;
        if (line_no == 1)
            break;
        if (sscanf(line, "seed %" SCNu64, &f->run.seed) == 1)
            have[0] = 1;
        else if (sscanf(line, "batch %lld", &v) == 1)
            have[1] = 1, f->run.batch = v;
        else if (sscanf(line, "threads %lld", &v) == 1)
            have[2] = 1, f->run.threads = v;
        else if (sscanf(line, "images %lld", &v) == 1)
            have[3] = 1, f->run.images = v;
        else if (sscanf(line, "checkpoint step %lld rejected %lld epoch %" SCNu64 " index %" SCNu64,
                        &p.step, &p.rejected, &p.epoch, &p.index) == 4 &&
                 f->n_positions < 2)
            f->positions[f->n_positions++] = p;
        else {
            snprintf(err, len, "line %d is not understood", line_no);
            return 0;
        }
    }
    if (line_no == 0 || !have[0] || !have[1] || !have[2] || !have[3]) {
        snprintf(err, len, "it is not an agave-train state file or it is incomplete");
        return 0;
    }
    return 1;
}

int legacy_state_read(const char *path, long long step, long long rejected, agave_run_state *s,
                      int *have_settings, char *err, size_t len)
{
    *have_settings = 0;
    err[0] = '\0';
    int missing;
    char *text = read_text_file(path, NULL, &missing, err, len);
    if (!text)
        return missing ? (err[0] = '\0', 0) : -1;
    legacy_file f;
    memset(&f, 0, sizeof f);
    f.run.struct_size = sizeof f.run;
    int ok = parse(text, &f, err, len);
    free(text);
    if (!ok)
        return -1;
    *s = f.run;
    *have_settings = 1;
    const legacy_position *match = NULL;
    for (int i = 0; i < f.n_positions; i++)
        if (f.positions[i].step == step && (!match || f.positions[i].rejected == rejected))
            match = &f.positions[i];
    if (!match) {
        snprintf(err, len, "%s has no data position for step %lld", path, step);
        return 0;
    }
    s->epoch = match->epoch;
    s->index = match->index;
    return 1;
}
