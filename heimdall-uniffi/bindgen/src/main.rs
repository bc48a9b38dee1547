//! `uniffi-bindgen generate --library <libheimdall_uniffi.so> --language kotlin --out-dir <dir>`: the Kotlin
//! bindings of heimdall-uniffi, read from the built library itself (heimdall-jvm's `native.sh` runs it).

fn main() {
    uniffi::uniffi_bindgen_main()
}
