#!/usr/bin/env bash
# Builds heimdall-uniffi and writes what heimdall-jvm's jar packs, under the Maven build directory ($1, default
# ./target): the library as native/linux-x86-64/libheimdall_uniffi.so (where JNA finds it on the class path) and
# the Kotlin bindings UniFFI generates from it under generated-sources/uniffi. Uses CARGO_TARGET_DIR when set.
# HEIMDALL_NATIVE_PROFILE=dev builds a debug library (faster to build, slower to run); release by default.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${1:-$here/target}
profile=${HEIMDALL_NATIVE_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$profile" in
    dev) lib_dir="$target_dir/debug" ;;
    *) lib_dir="$target_dir/$profile" ;;
esac

cd "$root"
cargo build --locked -p heimdall-uniffi --profile "$profile"
cargo build --locked -p heimdall-uniffi-bindgen
lib="$lib_dir/libheimdall_uniffi.so"
rm -rf "$out/generated-sources/uniffi"
"$target_dir/debug/uniffi-bindgen" generate --library "$lib" --language kotlin \
    --out-dir "$out/generated-sources/uniffi" --no-format
mkdir -p "$out/native/linux-x86-64"
cp "$lib" "$out/native/linux-x86-64/libheimdall_uniffi.so"
echo "heimdall-jvm: native library from $lib ($profile)"
