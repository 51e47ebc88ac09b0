/* Command-line handling shared by agave-train, agave-eval and agave-sample:
 * a table of long options that both parses argv and prints --help, strict
 * number parsing, and the one-line error convention (exit status 2). */
#ifndef AGAVE_EXAMPLES_CLI_H
#define AGAVE_EXAMPLES_CLI_H

#include <stddef.h>

/* Exit statuses shared by the programs (docs/programs.md). */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 2,        /* bad arguments, unreadable or broken inputs, failed writes */
    EXIT_DIVERGED = 3      /* agave-train: too many non-finite steps in a row */
};

typedef enum cli_kind {
    CLI_FLAG,     /* no value; target is int, set to 1 */
    CLI_INT,      /* target is long long, checked against [min, max] */
    CLI_DOUBLE,   /* target is double, finite, checked against [min, max] */
    CLI_STRING,   /* target is const char *, non-empty */
    CLI_LIST,     /* repeatable; target is cli_list */
    CLI_OPERAND   /* the one argument that is not an option (agave-decompress's FILE);
                     target is const char *; name is what --help shows */
} cli_kind;

typedef struct cli_list {
    const char **items;   /* points into argv; allocated by cli_parse */
    int n;
} cli_list;

typedef struct cli_option {
    const char *name;      /* without the leading "--" */
    cli_kind kind;
    void *target;
    const char *metavar;   /* "N", "PATH", ...; NULL for flags */
    const char *help;      /* one sentence */
    const char *fallback;  /* what --help shows as the default, or NULL */
    double min, max;       /* CLI_INT and CLI_DOUBLE */
    int given;             /* set by cli_parse: times the option appeared */
} cli_option;

typedef struct cli_program {
    const char *name;      /* "agave-train" */
    const char *usage;     /* the synopsis lines after "usage: " */
    const char *summary;   /* what the program does, a few lines */
    const char *epilog;    /* outputs and exit statuses, a few lines, or NULL */
    cli_option *options;
    int n_options;
} cli_program;

/* Parses argv ("--name value" or "--name=value"; --help anywhere prints the
 * help to stdout, --version the program's and the library's version).
 * Returns -1 to go on, or the exit status: 0 after --help or --version,
 * EXIT_ERROR after printing one line to stderr. */
int cli_parse(cli_program *prog, int argc, char **argv);
/* Frees what cli_parse allocated (the items of CLI_LIST options). */
void cli_free(cli_program *prog);

/* The option named name, or NULL (for checking `given`). */
const cli_option *cli_find(const cli_program *prog, const char *name);

/* Prints "program: message" as one line to stderr and returns EXIT_ERROR, so
 * that callers can write `return fail(...)`. */
int fail(const char *program, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "program: note: message" to stderr (informational, not an error). */
void note(const char *program, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* In the processes other than rank 0 of a multi-process run (dist.h), fail()
 * and note() print nothing; fail() keeps its last message (without the
 * newline) for cli_held_message(), which dist_agree and dist_abort print when
 * that process's error is the one to report. */
void cli_mute(int on);
const char *cli_held_message(void);

/* Strict conversions: the whole string must be a number in range. */
int parse_ll(const char *text, long long min, long long max, long long *out);
int parse_double(const char *text, double min, double max, double *out);

/* "" when n is 1, else "s": "1 minute", "2 minutes", "0.5 minutes". */
const char *plural(double n);

/* Online CPUs, at least 1. */
int cpu_count(void);

#endif
