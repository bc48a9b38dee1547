// Where a UniFFI call's time goes on the JVM, for the benchmarks' detail lines (stderr). The generated Kotlin
// bindings reach Rust through JNA (direct mapping). Every crossing allocates a JNA Structure for its
// RustCallStatus: native memory (malloc), tracked in JNA's map of allocated memory and registered with JNA's
// cleaner, and a nested RustBuffer structure made by reflection. A String argument costs one more crossing
// (RustBuffer.alloc, which returns a RustBuffer structure by value) and its UTF-8 encoding; a returned record or
// enum (Match, Decision) is a RustBuffer returned by value, read, then freed by one more crossing. This measures
// those parts one by one. It uses the bindings' internal declarations (visible to this module's tests).
package dev.heimdall.jvm.bench

import dev.heimdall.uniffi.FfiConverterString
import dev.heimdall.uniffi.IntegrityCheckingUniffiLib
import dev.heimdall.uniffi.Mapping
import dev.heimdall.uniffi.Resolver
import dev.heimdall.uniffi.UniffiRustCallStatus

object FfiCost {
    private const val WARMUP = 20
    private const val BATCHES = 60
    private const val BATCH = 500
    private const val BUDGET_SECONDS = 1.5

    /** One detail line per part, each measured alone (about 1.5 s each at most). */
    fun parts(): List<String> {
        val tiny = Resolver(listOf(Mapping(method = "GET", pathPattern = "/courses/:id", action = "course:read")), 1L)
        return tiny.use {
            listOf(
                "a bare JNA call (a UniFFI checksum function: no arguments, no call status)" to
                    timeBatches(WARMUP, BATCHES, BATCH, BUDGET_SECONDS) {
                        IntegrityCheckingUniffiLib.uniffi_heimdall_uniffi_checksum_method_resolver_version().toLong()
                    },
                "one RustCallStatus structure, as UniFFI allocates for every crossing" to
                    timeBatches(WARMUP, BATCHES, BATCH, BUDGET_SECONDS) { UniffiRustCallStatus().code.toLong() },
                "a method without arguments (Resolver.version: 2 crossings, clone the handle and call)" to
                    timeBatches(WARMUP, BATCHES, BATCH, BUDGET_SECONDS) { tiny.version() },
                "a 10-character String lowered and lifted back (2 crossings: RustBuffer alloc and free)" to
                    timeBatches(WARMUP, BATCHES, BATCH, BUDGET_SECONDS) {
                        FfiConverterString.lift(FfiConverterString.lower("/courses/7")).length.toLong()
                    },
                "Resolver.resolve on 1 mapping, a hit (5 crossings: clone, 2 strings, call, free the Match)" to
                    timeBatches(WARMUP, BATCHES, BATCH, BUDGET_SECONDS) { tiny.resolve("GET", "/courses/7")?.mappingId ?: 0L },
            ).map { (what, t) -> "FFI part: $what: $t" }
        }
    }
}
