/* libagave version numbers. The soname major is read from AGAVE_VERSION_MAJOR
 * by the Makefile, so this file is the single place a release is numbered. */
#ifndef AGAVE_VERSION_H
#define AGAVE_VERSION_H

#define AGAVE_VERSION_MAJOR 1
#define AGAVE_VERSION_MINOR 0
#define AGAVE_VERSION_PATCH 0

#define AGAVE_VERSION_NUMBER \
    (AGAVE_VERSION_MAJOR * 10000 + AGAVE_VERSION_MINOR * 100 + AGAVE_VERSION_PATCH)

#define AGAVE_STRINGIFY_(x) #x
#define AGAVE_STRINGIFY(x) AGAVE_STRINGIFY_(x)
#define AGAVE_VERSION_STRING                                                  \
    AGAVE_STRINGIFY(AGAVE_VERSION_MAJOR) "." AGAVE_STRINGIFY(AGAVE_VERSION_MINOR) \
    "." AGAVE_STRINGIFY(AGAVE_VERSION_PATCH)

#endif
