/* alsa-lib prints its errors straight to stderr (dozens of "ALSA lib ..." lines per attempt to
 * open a device on a machine without a sound card). Its error handler is variadic, which
 * stable Rust cannot define, so this shim formats each message and hands the line to Rust
 * (endpoint::alsa_log logs it through tracing at debug level). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <alsa/asoundlib.h>

static void (*silentmon_alsa_sink)(const char *line);

static void silentmon_alsa_handler(const char *file, int line, const char *function, int err,
                                   const char *fmt, ...) {
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s:%d:(%s) ", file ? file : "?", line,
                     function ? function : "?");
    if (n < 0 || (size_t)n >= sizeof msg) {
        n = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (err != 0) {
        size_t used = strlen(msg);
        snprintf(msg + used, sizeof msg - used, ": %s", snd_strerror(err));
    }
    if (silentmon_alsa_sink) {
        silentmon_alsa_sink(msg);
    }
}

/* Routes alsa-lib's error messages to `sink` (called with one NUL-terminated line each). */
void silentmon_alsa_route_errors(void (*sink)(const char *line)) {
    silentmon_alsa_sink = sink;
    snd_lib_error_set_handler(silentmon_alsa_handler);
}
