// jvm_resolve: Resolver.resolve called from Kotlin (through UniFFI: the strings lowered, the Match lifted) on 10,000
// mappings, against the spec's design in plain Kotlin (RegexScan: one java.util.regex.Pattern per mapping, first
// match in priority order), on the Rust benchmark's route set and request mix (RouteMix). Both must give the same
// mapping and parameters for every one of the 512 requests (asserted); then each is timed over whole passes of the
// mix (the per-call time of a pass; the median over the passes). Target: Heimdall >= 50x faster.
package dev.heimdall.jvm.bench

import dev.heimdall.uniffi.HeimdallException
import dev.heimdall.jvm.FastResolver
import dev.heimdall.uniffi.Resolver
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Tag
import org.junit.jupiter.api.Test

@Tag("bench")
class ResolveBenchTest {
    private companion object {
        const val MAPPINGS = 10_000
        const val TARGET_SPEEDUP = 50.0

        // Each measurement: whole passes over the mix, up to a number of passes or a time budget.
        const val HEIMDALL_WARMUP_PASSES = 20
        const val HEIMDALL_PASSES = 200
        const val HEIMDALL_BUDGET_SECONDS = 6.0
        const val SCAN_WARMUP_PASSES = 3
        const val SCAN_PASSES = 15
        const val SCAN_BUDGET_SECONDS = 8.0
    }

    @Test
    fun jvmResolve() {
        val started = System.nanoTime()
        val routes = RouteMix.routes(MAPPINGS)
        val mappings = RouteMix.mappings(routes)
        val requests = RouteMix.requests(routes)

        var t = System.nanoTime()
        val resolver = Resolver(mappings, 1L)
        val heimdallBuildMs = (System.nanoTime() - t) / 1e6
        t = System.nanoTime()
        val scan = RegexScan(mappings)
        val scanBuildMs = (System.nanoTime() - t) / 1e6
        assertEquals(MAPPINGS, resolver.size().toInt())
        assertEquals(MAPPINGS, scan.size)

        resolver.use {
            val fast = FastResolver(resolver)
            // The same answers on the whole mix: nothing left out. (A path Heimdall rejected as not canonical
            // would raise here and fail the test: the mix holds none.)
            val wrong = mutableListOf<String>()
            var routeHits = 0
            var regexHits = 0
            for (r in requests) {
                val ours = try {
                    resolver.resolve(r.method, r.target)
                } catch (e: HeimdallException) {
                    throw AssertionError("Heimdall refused ${r.method} ${r.target}, which the scan cannot compare: ${e.message}", e)
                }
                assertEquals(ours, fast.resolve(r.method, r.target), "the hot path and UniFFI's call disagree on ${r.method} ${r.target}")
                val theirs = scan.resolve(r.method, r.target)
                val mine = ours?.let { RegexScan.Answer(it.mappingId, it.params) }
                if (mine != theirs) wrong += "${r.method} ${r.target}: Heimdall $mine, the scan $theirs"
                if (ours != null) if (ours.pathPattern.startsWith("~")) regexHits++ else routeHits++
            }
            assertEquals(emptyList<String>(), wrong, "the scan and Heimdall disagree on ${wrong.size} of ${requests.size} requests")
            val misses = requests.size - routeHits - regexHits
            detail("$MAPPINGS mappings (${routes.count { it.isRegex }} regular expressions); compared all ${requests.size} requests of the mix, all alike: $routeHits route hits, $regexHits regex hits, $misses misses")
            detail(fmt("built: Heimdall's Resolver %.0f ms (10,000 mappings lowered through UniFFI and compiled), the scan's patterns %.0f ms", heimdallBuildMs, scanBuildMs))
            val creationOrder = RegexScan(mappings, inPriorityOrder = false)
            val differ = requests.count { creationOrder.resolve(it.method, it.target) != scan.resolve(it.method, it.target) }
            detail("(the same scan in creation order instead of priority order would answer $differ of ${requests.size} requests differently)")

            val n = requests.size
            val heimdall = timeBatches(HEIMDALL_WARMUP_PASSES, HEIMDALL_PASSES, n, HEIMDALL_BUDGET_SECONDS) { i ->
                val r = requests[i % n]
                fast.resolve(r.method, r.target)?.mappingId ?: 0L
            }
            val uniffi = timeBatches(HEIMDALL_WARMUP_PASSES, HEIMDALL_PASSES, n, HEIMDALL_BUDGET_SECONDS) { i ->
                val r = requests[i % n]
                resolver.resolve(r.method, r.target)?.mappingId ?: 0L
            }
            val kotlin = timeBatches(SCAN_WARMUP_PASSES, SCAN_PASSES, n, SCAN_BUDGET_SECONDS) { i ->
                val r = requests[i % n]
                scan.resolve(r.method, r.target)?.mappingId ?: 0L
            }
            val speedup = kotlin.median / heimdall.median
            detail("Heimdall FastResolver.resolve (one JNA call): $heimdall")
            detail("Heimdall Resolver.resolve through UniFFI's bindings: $uniffi (each call: 5 FFI crossings; see jvm_authorize_warm's FFI parts)")
            detail("Kotlin regex scan:         $kotlin")
            detail(fmt("took %.1f s; load average %s", (System.nanoTime() - started) / 1e9, loadAverage()))
            println(
                fmt("jvm_resolve: mappings=%d heimdall_ns=%.0f kotlin_scan_ns=%.0f speedup=%.0f ", MAPPINGS, heimdall.median, kotlin.median, speedup) +
                    verdict(fmt(">=%.0fx", TARGET_SPEEDUP), speedup >= TARGET_SPEEDUP),
            )
        }
    }
}
