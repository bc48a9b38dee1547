// jvm_authorize_warm: Authorizer.authorize called from Kotlin, warm (the token verified and the decision made by an
// earlier call, both cached), the FFI call included: the method, target and token lowered into RustBuffers, the
// Decision lifted back. The authorizer follows a real heimdall-http (the harness's Stack, on SQLite, trusting the
// harness's Idp) and decides locally from its grants export. Median per-call time over batches of calls on one
// thread, every answer checked (allowed, the right mapping). Target: <= 5 us median.
package dev.heimdall.jvm.bench

import dev.heimdall.jvm.harness.AUDIENCE
import dev.heimdall.jvm.harness.ISSUER
import dev.heimdall.jvm.harness.Idp
import dev.heimdall.jvm.harness.Stack
import dev.heimdall.jvm.harness.courses
import dev.heimdall.jvm.harness.heimdallBin
import dev.heimdall.jvm.harness.waitUntil
import dev.heimdall.jvm.FastAuthorizer
import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.AuthorizerSettings
import dev.heimdall.uniffi.Decision
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Tag
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path
import java.time.Duration

@Tag("bench")
class AuthorizeWarmBenchTest {
    private companion object {
        const val TARGET_US = 5.0
        const val METHOD = "GET"
        const val TARGET = "/courses/7?tab=info"
        const val WARMUP_BATCHES = 20
        const val BATCHES = 200
        const val BATCH = 200
        const val BUDGET_SECONDS = 8.0
    }

    @TempDir
    lateinit var tmp: Path

    @Test
    fun jvmAuthorizeWarm() {
        val started = System.nanoTime()
        val binary = heimdallBin()
        Idp().use { idp ->
            Stack(binary, idp, tmp.resolve("stack")).use { stack ->
                val c = courses(stack)
                val settings = AuthorizerSettings(
                    jwksUrl = idp.jwksUrl,
                    heimdallUrl = stack.base,
                    credential = c.key,
                    issuer = ISSUER,
                    audience = AUDIENCE,
                    // Longer than the run, so that every measured call finds its decision cached.
                    decisionTtl = 300.0,
                )
                Authorizer(settings).use { authorizer ->
                    assertTrue(authorizer.waitReady(20.0), "the authorizer loaded no snapshot")
                    val token = idp.token(c.alice, ttlSeconds = 3600)
                    // The first allowed answer caches the token and the decision: every later call is warm.
                    val first = waitUntil("alice allowed", Duration.ofSeconds(15)) {
                        authorizer.authorize(METHOD, TARGET, token) as? Decision.Allowed
                    }
                    assertEquals(c.alice, first.grant.subject)
                    assertEquals(c.courseMapping, first.grant.mappingId)
                    assertEquals(mapOf("id" to "7"), first.grant.params)

                    val fast = FastAuthorizer(authorizer)
                    val header = "Bearer $token"
                    assertEquals(first, fast.authorize(METHOD, TARGET, header))
                    var refused = 0
                    val timing = timeBatches(WARMUP_BATCHES, BATCHES, BATCH, BUDGET_SECONDS) {
                        when (val d = fast.authorize(METHOD, TARGET, header)) {
                            is Decision.Allowed -> d.grant.mappingId ?: 0L
                            is Decision.Refused -> {
                                refused++
                                -1L
                            }
                        }
                    }
                    val uniffi = timeBatches(WARMUP_BATCHES, BATCHES, BATCH, BUDGET_SECONDS) {
                        when (val d = authorizer.authorize(METHOD, TARGET, token)) {
                            is Decision.Allowed -> d.grant.mappingId ?: 0L
                            is Decision.Refused -> {
                                refused++
                                -1L
                            }
                        }
                    }
                    assertEquals(0, refused, "warm calls refused")
                    val medianUs = timing.median / 1000
                    detail("FastAuthorizer.authorize($METHOD, $TARGET, a ${token.length}-character RS256 token) — what the filter and the plugin call, one JNA call — warm: $timing")
                    detail("Authorizer.authorize through UniFFI's bindings, warm: $uniffi")
                    detail("UniFFI's call: 6 FFI crossings (clone the handle, allocate 3 RustBuffers for the strings, the call, free the Decision's buffer), each with its RustCallStatus structure, and 4 RustBuffer structures returned by value")
                    detail("authorizer stats: ${authorizer.stats()}")
                    FfiCost.parts().forEach(::detail)
                    detail(fmt("took %.1f s; load average %s", (System.nanoTime() - started) / 1e9, loadAverage()))
                    println(fmt("jvm_authorize_warm: median_us=%.2f ", medianUs) + verdict(fmt("<=%.0fus", TARGET_US), medianUs <= TARGET_US))
                }
            }
        }
    }
}
