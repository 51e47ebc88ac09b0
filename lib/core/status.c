/* Status text, version, and the per-context error message. */
#include <stdio.h>
#include <string.h>

#include "core.h"

const char *agave_status_string(agave_status status)
{
    switch (status) {
    case AGAVE_OK: return "ok";
    case AGAVE_ERR_NULL: return "a required pointer was NULL";
    case AGAVE_ERR_INVALID_ARG: return "invalid argument";
    case AGAVE_ERR_SHAPE: return "tensor shapes do not fit the operation";
    case AGAVE_ERR_CONTEXT: return "handles belong to different contexts";
    case AGAVE_ERR_NOMEM: return "out of memory";
    case AGAVE_ERR_IO: return "input/output error";
    case AGAVE_ERR_FORMAT: return "malformed, truncated or foreign file";
    case AGAVE_ERR_VERSION: return "unsupported file format version";
    case AGAVE_ERR_CHECKSUM: return "checksum mismatch";
    case AGAVE_ERR_CONFIG: return "invalid or mismatched model configuration";
    case AGAVE_ERR_STATE: return "call not valid in the current state";
    case AGAVE_ERR_NUMERIC: return "non-finite loss or gradient";
    case AGAVE_ERR_LIMIT: return "size exceeds a limit";
    case AGAVE_ERR_INTERRUPTED: return "interrupted";
    case AGAVE_ERR_UNKNOWN_KEY: return "unknown configuration key";
    }
    return "unknown status";
}

const char *agave_version_string(void) { return AGAVE_VERSION_STRING; }
unsigned agave_version_number(void) { return AGAVE_VERSION_NUMBER; }

agave_status ctx_error(agave_context *ctx, agave_status status, const char *fmt, ...)
{
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
        va_end(ap);
    }
    return status;
}

void ctx_clear_error(agave_context *ctx)
{
    if (ctx)
        ctx->last_error[0] = '\0';
}

const char *agave_context_last_error(const agave_context *ctx)
{
    return ctx ? ctx->last_error : "no context";
}
