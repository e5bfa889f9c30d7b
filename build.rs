//! Compiles the small C shim that routes alsa-lib's error messages into silentmon's logs
//! (src/endpoint/alsa_log.c: alsa-lib's error handler is variadic, which stable Rust cannot
//! define). Linux only, where cpal plays through ALSA.

fn main() {
    println!("cargo:rerun-if-changed=src/endpoint/alsa_log.c");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        cc::Build::new()
            .file("src/endpoint/alsa_log.c")
            .warnings(true)
            .compile("silentmon_alsa_log");
    }
}
