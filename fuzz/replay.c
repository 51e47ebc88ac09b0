/* A main() for a harness without libFuzzer: runs LLVMFuzzerTestOneInput once
 * on every file named on the command line (directories: every file in them).
 * `make fuzz` links it with a coverage-instrumented build to measure the
 * line and branch coverage the corpus reaches (fuzz/run.sh); it also replays
 * an input under gdb or valgrind, where libFuzzer's runtime is in the way.
 *
 * usage: replay_<harness> FILE|DIR...   (prints the number of inputs run) */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                exit(1);
            }
            buf = p;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0)
            break;
    }
    fclose(f);
    /* An exact-size copy, so that AddressSanitizer sees reads past the end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (len)
        memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 1;
}

int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                    continue;
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
                n += run_file(path);
            }
            if (d)
                closedir(d);
        } else {
            n += run_file(argv[i]);
        }
    }
    printf("replay: %d inputs\n", n);
    return 0;
}
