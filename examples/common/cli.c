/* Long-option parsing and --help from one table, so that the help can never
 * forget an option. No getopt_long: it prints its own messages (a second
 * line on stderr) and accepts abbreviations, which would make every prefix of
 * an option part of the contract. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agave.h"

/* Set on the ranks other than 0 of a multi-process run (dist.h): their
 * messages are held, not printed, until it is clear that someone must see
 * them. Written once at start-up, before any signal handler exists. */
static int muted;
static char held[1024];

void cli_mute(int on) { muted = on; }
const char *cli_held_message(void) { return held; }

int fail(const char *program, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(held, sizeof held, "%s: ", program);
    if (n > 0 && (size_t)n < sizeof held)
        vsnprintf(held + n, sizeof held - (size_t)n, fmt, ap);
    va_end(ap);
    if (!muted) {
        fputs(held, stderr);
        fputc('\n', stderr);
    }
    return EXIT_ERROR;
}

void note(const char *program, const char *fmt, ...)
{
    if (muted)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: note: ", program);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int parse_ll(const char *text, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

int parse_double(const char *text, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

const char *plural(double n) { return n == 1 ? "" : "s"; }

int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

const cli_option *cli_find(const cli_program *prog, const char *name)
{
    for (int i = 0; i < prog->n_options; i++)
        if (strcmp(prog->options[i].name, name) == 0)
            return &prog->options[i];
    return NULL;
}

/* Prints text wrapped at 79 columns, continuation lines indented by indent;
 * the first line starts at column `at`. */
static void print_wrapped(const char *text, int at, int indent)
{
    const char *p = text;
    while (*p) {
        int word = (int)strcspn(p, " ");
        if (at > indent && at + 1 + word > 79) {
            printf("\n%*s", indent, "");
            at = indent;
        } else if (at > indent) {
            putchar(' ');
            at++;
        }
        printf("%.*s", word, p);
        at += word;
        p += word;
        while (*p == ' ')
            p++;
    }
    putchar('\n');
}

static void print_help(const cli_program *prog)
{
    printf("usage: %s\n\n%s\n\noptions:\n", prog->usage, prog->summary);
    for (int i = 0; i < prog->n_options; i++) {
        const cli_option *o = &prog->options[i];
        char left[64], text[640];
        snprintf(left, sizeof left, "%s%s%s%s", o->kind == CLI_OPERAND ? "" : "--", o->name,
                 o->metavar ? " " : "", o->metavar ? o->metavar : "");
        snprintf(text, sizeof text, "%s%s%s%s", o->help, o->fallback ? " (default: " : "",
                 o->fallback ? o->fallback : "", o->fallback ? ")" : "");
        printf("  %-22s ", left);
        /* A long option name pushes its text to the next line. */
        if (strlen(left) > 22)
            printf("\n%*s", 25, "");
        print_wrapped(text, 25, 25);
    }
    printf("  %-22s %s\n", "--help", "print this help and exit");
    printf("  %-22s %s\n", "--version", "print the version and exit");
    if (prog->epilog)
        printf("\n%s\n", prog->epilog);
}

/* ---- the man page's generated part ------------------------------------------
 * With AGAVE_HELP_FORMAT=man in the environment, --help prints the synopsis,
 * description and options as troff for scripts/man.sh, which puts them into
 * man/PROGRAM.1.in: the pages are made from this table, so they cannot
 * drift from --help. */

/* Text as troff: backslashes and hyphens escaped, no line starting with a
 * control character; ended by a newline unless inline. */
static void troff_put(const char *text, int inline_text)
{
    int at_line_start = 1;
    for (const char *p = text; *p; p++) {
        if (at_line_start && (*p == '.' || *p == '\''))
            fputs("\\&", stdout);
        if (*p == '\\')
            fputs("\\e", stdout);
        else if (*p == '-')
            fputs("\\-", stdout);
        else
            putchar(*p);
        at_line_start = *p == '\n';
    }
    if (!at_line_start && !inline_text)
        putchar('\n');
}

static void troff_text(const char *text) { troff_put(text, 0); }

static void print_man(const cli_program *prog)
{
    printf(".SH SYNOPSIS\n.nf\n");
    troff_text(prog->usage);
    printf(".fi\n.SH DESCRIPTION\n");
    troff_text(prog->summary);
    if (prog->epilog) {   /* its lines as the program prints them */
        printf(".PP\n.nf\n");
        troff_text(prog->epilog);
        printf(".fi\n");
    }
    printf(".SH OPTIONS\n");
    for (int i = 0; i < prog->n_options; i++) {
        const cli_option *o = &prog->options[i];
        printf(".TP\n\\fB\\-\\-");
        troff_put(o->name, 1);
        if (o->metavar) {
            printf("\\fR \\fI");
            troff_put(o->metavar, 1);
        }
        printf("\\fR\n");
        troff_text(o->help);
        if (o->fallback) {
            printf("(default: ");
            troff_put(o->fallback, 1);
            printf(")\n");
        }
    }
    printf(".TP\n\\fB\\-\\-help\\fR\nprint this help and exit\n");
    printf(".TP\n\\fB\\-\\-version\\fR\nprint the version and exit\n");
}

/* Describes the accepted range of a numeric option for an error message. */
static void range_text(const cli_option *o, char *buf, size_t len)
{
    if (o->kind == CLI_INT && o->max >= 9.2e18)
        snprintf(buf, len, "a whole number >= %.0f", o->min);
    else if (o->kind == CLI_INT)
        snprintf(buf, len, "a whole number in %.0f..%.0f", o->min, o->max);
    else if (o->max >= 1e300)
        snprintf(buf, len, "a number >= %g", o->min);
    else
        snprintf(buf, len, "a number in %g..%g", o->min, o->max);
}

static int store(const cli_program *prog, cli_option *o, const char *value)
{
    char range[96];
    switch (o->kind) {
    case CLI_FLAG:
        *(int *)o->target = 1;
        return 1;
    case CLI_INT: {
        long long v;
        long long lo = (long long)o->min, hi = o->max >= 9.2e18 ? 9223372036854775807LL
                                                               : (long long)o->max;
        if (parse_ll(value, lo, hi, &v)) {
            *(long long *)o->target = v;
            return 1;
        }
        break;
    }
    case CLI_DOUBLE:
        if (parse_double(value, o->min, o->max, (double *)o->target))
            return 1;
        break;
    case CLI_STRING:
    case CLI_OPERAND:
        if (*value) {
            *(const char **)o->target = value;
            return 1;
        }
        fail(prog->name, "--%s needs a non-empty value", o->name);
        return 0;
    case CLI_LIST: {
        cli_list *l = o->target;
        l->items[l->n++] = value;
        return 1;
    }
    }
    range_text(o, range, sizeof range);
    fail(prog->name, "--%s: '%s' is not %s", o->name, value, range);
    return 0;
}

static cli_option *lookup(cli_program *prog, const char *name, size_t len)
{
    for (int i = 0; i < prog->n_options; i++)
        if (prog->options[i].kind != CLI_OPERAND && strlen(prog->options[i].name) == len &&
            strncmp(prog->options[i].name, name, len) == 0)
            return &prog->options[i];
    return NULL;
}

/* List options get room for every argument, so that storing never fails. */
static int allocate_lists(cli_program *prog, int argc)
{
    for (int i = 0; i < prog->n_options; i++) {
        cli_option *o = &prog->options[i];
        if (o->kind != CLI_LIST)
            continue;
        cli_list *l = o->target;
        l->n = 0;
        l->items = calloc((size_t)argc + 1, sizeof *l->items);
        if (!l->items)
            return 0;
    }
    return 1;
}

/* The library the program runs with, and the header it was built against
 * when they differ (a newer libagave.so.MAJOR installed since). */
static void print_version(const cli_program *prog)
{
    printf("%s (libagave) %s\n", prog->name, agave_version_string());
    if (strcmp(agave_version_string(), AGAVE_VERSION_STRING) != 0)
        printf("built against libagave %s\n", AGAVE_VERSION_STRING);
}

int cli_parse(cli_program *prog, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            const char *format = getenv("AGAVE_HELP_FORMAT");
            if (format && strcmp(format, "man") == 0)
                print_man(prog);
            else
                print_help(prog);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            print_version(prog);
            return EXIT_OK;
        }
    }
    if (!allocate_lists(prog, argc))
        return fail(prog->name, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            cli_option *operand = NULL;
            for (int k = 0; k < prog->n_options; k++)
                if (prog->options[k].kind == CLI_OPERAND)
                    operand = &prog->options[k];
            if (!operand || operand->given)
                return fail(prog->name, "unexpected argument '%s' (options start with --; see %s "
                            "--help)", arg, prog->name);
            if (!store(prog, operand, arg))
                return EXIT_ERROR;
            operand->given++;
            continue;
        }
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        cli_option *o = lookup(prog, arg + 2, len);
        if (!o)
            return fail(prog->name, "unknown option '%.*s' (see %s --help)", (int)len + 2, arg,
                        prog->name);
        const char *value = NULL;
        if (o->kind == CLI_FLAG) {
            if (eq)
                return fail(prog->name, "--%s takes no value", o->name);
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return fail(prog->name, "--%s needs a value (%s)", o->name, o->metavar);
        }
        if (o->given && o->kind != CLI_LIST)
            return fail(prog->name, "--%s is given twice", o->name);
        if (!store(prog, o, value))
            return EXIT_ERROR;
        o->given++;
    }
    return -1;
}

void cli_free(cli_program *prog)
{
    for (int i = 0; i < prog->n_options; i++)
        if (prog->options[i].kind == CLI_LIST) {
            cli_list *l = prog->options[i].target;
            free(l->items);
            l->items = NULL;
        }
}
