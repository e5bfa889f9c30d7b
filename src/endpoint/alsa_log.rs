//! alsa-lib's error messages into the log instead of stderr.
//!
//! alsa-lib prints its errors straight to stderr: a dozen "ALSA lib ..." lines for each failed
//! open on a machine without a sound card, i.e. every second while the endpoint retries its
//! device, burying what silentmon says. [`route_alsa_errors`] installs, once per process and
//! before the first device call, a handler that logs each message at debug level (target
//! `alsa`; `-v` shows them). alsa-lib's handler is variadic, which stable Rust cannot define,
//! so a C shim (`alsa_log.c`, built by build.rs) formats the message and hands Rust the line.
//!
//! Rules: the only `unsafe` in the crate is here (two FFI calls); nothing else calls alsa-lib
//! directly. On other systems this does nothing.
#![allow(unsafe_code)]

/// Routes alsa-lib's error messages into the log, once per process (later calls do nothing).
pub(super) fn route_alsa_errors() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: the shim stores the function pointer and installs alsa-lib's handler; a plain
        // C call without preconditions, made once.
        ONCE.call_once(|| unsafe { silentmon_alsa_route_errors(log_alsa) });
    }
}

#[cfg(target_os = "linux")]
extern "C" {
    fn silentmon_alsa_route_errors(sink: extern "C" fn(*const std::ffi::c_char));
}

/// Called by the shim with one formatted, NUL-terminated message.
#[cfg(target_os = "linux")]
extern "C" fn log_alsa(line: *const std::ffi::c_char) {
    if line.is_null() {
        return;
    }
    // SAFETY: the shim passes a NUL-terminated buffer that lives for the duration of the call.
    let line = unsafe { std::ffi::CStr::from_ptr(line) }.to_string_lossy();
    tracing::debug!(target: "alsa", "{line}");
}
