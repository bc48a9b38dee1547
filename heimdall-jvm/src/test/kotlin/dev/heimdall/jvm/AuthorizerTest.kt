package dev.heimdall.jvm

import dev.heimdall.jvm.harness.Cerbos
import dev.heimdall.jvm.harness.Courses
import dev.heimdall.jvm.harness.Idp
import dev.heimdall.jvm.harness.Stack
import dev.heimdall.jvm.harness.cerbosBin
import dev.heimdall.jvm.harness.courses
import dev.heimdall.jvm.harness.heimdallBin
import dev.heimdall.jvm.harness.installPolicies
import dev.heimdall.jvm.harness.waitUntil
import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.AuthorizerSettings
import dev.heimdall.uniffi.Decision
import dev.heimdall.uniffi.HeimdallException
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.nio.file.Path
import java.time.Duration
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

/** The authorizer from Kotlin against a real heimdall-http, its push worker and the real Cerbos. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class AuthorizerTest {
    private val idp = Idp()
    private val opened = mutableListOf<AutoCloseable>()

    @TempDir
    lateinit var tmp: Path

    @AfterEach
    fun closeOpened() {
        opened.asReversed().forEach { it.close() }
        opened.clear()
    }

    @AfterAll
    fun stopIdp() = idp.close()

    private fun <T : AutoCloseable> open(x: T): T = x.also { opened += it }

    private fun stack(cerbos: Cerbos? = null) = open(Stack(heimdallBin(), idp, tmp.resolve("stack-${opened.size}"), cerbos))

    private fun settings(stack: Stack, credential: String, unmapped: String = "deny", cerbosUrl: String? = null) = AuthorizerSettings(
        jwksUrl = idp.jwksUrl,
        heimdallUrl = stack.base,
        credential = credential,
        cerbosUrl = cerbosUrl,
        issuer = dev.heimdall.jvm.harness.ISSUER,
        audience = dev.heimdall.jvm.harness.AUDIENCE,
        unmapped = unmapped,
        pollInterval = 0.2,
        decisionTtl = 5.0,
    )

    private fun ready(settings: AuthorizerSettings): Authorizer {
        val a = open(Authorizer(settings))
        assertTrue(a.waitReady(20.0), "the authorizer loaded no snapshot")
        return a
    }

    private fun Authorizer.status(method: String, target: String, token: String?): Int =
        when (val d = authorize(method, target, token)) {
            is Decision.Allowed -> 200
            is Decision.Refused -> d.refusal.status
        }

    private fun setUp(cerbos: Cerbos? = null): Pair<Stack, Courses> {
        val s = stack(cerbos)
        return s to courses(s)
    }

    @Test
    fun `allowed, denied, unmapped, expired, forged and non-canonical requests`() {
        val (stack, c) = setUp()
        val a = ready(settings(stack, c.key))
        val alice = idp.token(c.alice)

        val allowed = a.authorize("GET", "/courses/7?x=1", alice)
        assertTrue(allowed is Decision.Allowed, "$allowed")
        val grant = (allowed as Decision.Allowed).grant
        assertEquals(c.alice, grant.subject)
        assertEquals("course:read", grant.action)
        assertEquals(c.courseMapping, grant.mappingId)
        assertEquals(mapOf("id" to "7"), grant.params)

        val denied = a.authorize("GET", "/admin/users", alice) as Decision.Refused
        assertEquals(403, denied.refusal.status)
        assertEquals("forbidden", denied.refusal.code)
        assertEquals(403, a.status("GET", "/courses/7", idp.token(c.bob)), "bob holds nothing")
        assertEquals(403, a.status("GET", "/nowhere", alice), "unmapped: denied")
        assertEquals(401, a.status("GET", "/courses/7", idp.token(c.alice, ttlSeconds = -600)), "expired")
        assertEquals(401, a.status("GET", "/courses/7", idp.token(c.alice, otherKey = true)), "forged")
        assertEquals(401, a.status("GET", "/courses/7", idp.token(c.alice, issuer = "https://elsewhere")), "another issuer")
        assertEquals(401, a.status("GET", "/courses/7", null), "no token")
        for (target in listOf("/courses/%37", "/courses/7/", "//courses/7", "/courses/./7", "/courses;x=1/7", "/courses/7#x")) {
            val r = a.authorize("GET", target, alice) as Decision.Refused
            assertEquals(400, r.refusal.status, target)
            assertEquals("invalid_input", r.refusal.code, target)
        }
        assertEquals(400, a.status("get", "/courses/7", alice), "a lower-case method")
        // The header form reads the token as every frontend does.
        assertTrue(a.authorizeRequest("GET", "/courses/7", "bearer $alice") is Decision.Allowed)
        assertEquals(401, (a.authorizeRequest("GET", "/courses/7", "Basic $alice") as Decision.Refused).refusal.status)

        // The frontends' hot path answers exactly as the UniFFI calls.
        val fast = FastAuthorizer(a)
        for ((target, token) in listOf(
            "/courses/7?x=1" to alice, "/admin/users" to alice, "/courses/7" to idp.token(c.bob), "/nowhere" to alice,
            "/courses/%37" to alice, "/courses/7" to null, "/courses/7" to idp.token(c.alice, otherKey = true),
        )) {
            val header = token?.let { "Bearer $it" }
            assertEquals(a.authorizeRequest("GET", target, header), fast.authorize("GET", target, header), target)
            assertEquals(a.authorizeRequest("GET", target, header), fast.authorizeNow("GET", target, header), target)
        }
        assertEquals(a.authorize("get", "/courses/7", alice), fast.authorize("get", "/courses/7", "Bearer $alice"))
        // Non-ASCII is refused as core refuses it; a lone surrogate (no UTF-8 for it) is refused, never rewritten.
        assertEquals(a.authorize("GET", "/courses/é", alice), fast.authorize("GET", "/courses/é", "Bearer $alice"))
        assertEquals(a.authorize("GET", "/courses/😀", alice), fast.authorize("GET", "/courses/😀", "Bearer $alice"))
        val lone = fast.authorize("GET", "/admin\uD800/x", "Bearer $alice") as Decision.Refused
        assertEquals(400, lone.refusal.status)

        val stats = a.stats()
        assertTrue(stats.allowed >= 4 && stats.denied >= 20, "$stats")

        val lenient = ready(settings(stack, c.key, unmapped = "allow"))
        val through = lenient.authorize("GET", "/nowhere", alice) as Decision.Allowed
        assertNull(through.grant.action)
        assertEquals(1, lenient.stats().unmappedAllowed)
    }

    @Test
    fun `a revocation is seen within a second, deciding locally`() {
        val (stack, c) = setUp()
        revocationSeen(stack, c, ready(settings(stack, c.key)))
    }

    @Test
    fun `a revocation is seen within a second, deciding locally with grants on demand`() {
        val (stack, c) = setUp()
        revocationSeen(stack, c, ready(settings(stack, c.key).copy(grantsCacheCapacity = 100uL)))
    }

    @Test
    fun `a revocation is seen within a second, deciding with the real Cerbos`(@TempDir cerbosDir: Path) {
        val cerbos = open(Cerbos(cerbosBin(), cerbosDir))
        cerbos.start()
        installPolicies(heimdallBin(), cerbos, cerbosDir)
        val (stack, c) = setUp(cerbos)
        val a = ready(settings(stack, c.key, cerbosUrl = cerbos.baseUrl))
        // The grant reaches Cerbos through the push worker.
        val alice = idp.token(c.alice)
        waitUntil("alice allowed through Cerbos", Duration.ofSeconds(15)) { if (a.status("GET", "/courses/1", alice) == 200) true else null }
        revocationSeen(stack, c, a)
    }

    @Test
    fun `embedded over the database URL, deciding with the real Cerbos`(@TempDir cerbosDir: Path) {
        val cerbos = open(Cerbos(cerbosBin(), cerbosDir))
        cerbos.start()
        installPolicies(heimdallBin(), cerbos, cerbosDir)
        val (stack, c) = setUp(cerbos)
        val embedded = AuthorizerSettings(
            jwksUrl = idp.jwksUrl,
            databaseUrl = stack.databaseUrl,
            cerbosUrl = cerbos.baseUrl,
            issuer = dev.heimdall.jvm.harness.ISSUER,
            audience = dev.heimdall.jvm.harness.AUDIENCE,
        )
        val a = ready(embedded)
        val alice = idp.token(c.alice)
        val allowed = waitUntil("alice allowed through Cerbos", Duration.ofSeconds(15)) {
            a.authorize("GET", "/courses/3", alice) as? Decision.Allowed
        }
        assertEquals(c.courseMapping, allowed.grant.mappingId)
        assertEquals(403, a.status("GET", "/admin/x", alice))
        assertEquals(403, a.status("GET", "/courses/3", idp.token(c.bob)))
        // A mapping made through heimdall-http is read from the database.
        val lessons = stack.rest.mapping("GET", "/lessons/:id", "course:read")
        waitUntil("the new mapping read from the database", Duration.ofSeconds(15)) {
            (a.authorize("GET", "/lessons/1", alice) as? Decision.Allowed)?.takeIf { it.grant.mappingId == lessons }
        }
        assertThrows<HeimdallException.Config> {
            Authorizer(embedded.copy(cerbosUrl = null))
        }
    }

    private fun revocationSeen(stack: Stack, c: Courses, a: Authorizer) {
        val alice = idp.token(c.alice)
        waitUntil("alice allowed", Duration.ofSeconds(10)) { if (a.status("GET", "/courses/1", alice) == 200) true else null }
        stack.rest.removeMember(c.group, c.alice)
        val start = System.nanoTime()
        waitUntil("the revocation seen", Duration.ofSeconds(5), Duration.ofMillis(5)) {
            if (a.status("GET", "/courses/1", alice) == 403) true else null
        }
        val seenMs = (System.nanoTime() - start) / 1_000_000
        assertTrue(seenMs <= 1000, "the revocation took $seenMs ms to be seen")
    }

    @Test
    fun `heimdall-http restarted while running - decisions go on, and changes after it arrive`() {
        val (stack, c) = setUp()
        val a = ready(settings(stack, c.key))
        val alice = idp.token(c.alice)
        assertEquals(200, a.status("GET", "/courses/1", alice))
        stack.server.close()
        // While it is away, the snapshot keeps answering.
        assertEquals(200, a.status("GET", "/courses/2", alice))
        assertEquals(403, a.status("GET", "/admin/x", alice))
        stack.restartServer()
        val newMapping = stack.rest.mapping("GET", "/lessons/:id", "course:read")
        waitUntil("the new mapping after the restart", Duration.ofSeconds(15)) {
            (a.authorize("GET", "/lessons/3", alice) as? Decision.Allowed)?.takeIf { it.grant.mappingId == newMapping }
        }
    }

    @Test
    fun `no snapshot yet - closed`() {
        // A heimdall-http that does not answer: nothing listens there.
        val port = dev.heimdall.jvm.harness.freePort()
        val a = open(
            Authorizer(
                AuthorizerSettings(jwksUrl = idp.jwksUrl, heimdallUrl = "http://127.0.0.1:$port", credential = "hk_unused", issuer = dev.heimdall.jvm.harness.ISSUER),
            ),
        )
        assertFalse(a.isReady())
        val refused = a.authorize("GET", "/courses/1", idp.token("alice")) as Decision.Refused
        assertEquals(503, refused.refusal.status)
        assertEquals("unavailable", refused.refusal.code)
        assertEquals(1, a.stats().noSnapshot)
    }

    @Test
    fun `32 threads at once - no crash and no wrong answer`() {
        val (stack, c) = setUp()
        val a = ready(settings(stack, c.key))
        val tokens = mapOf(c.alice to idp.token(c.alice), c.bob to idp.token(c.bob))
        val threads = 32
        val perThread = 2_000
        val wrong = AtomicInteger()
        val fast = FastAuthorizer(a)
        val pool = Executors.newFixedThreadPool(threads)
        val go = CountDownLatch(1)
        val done = (0 until threads).map { t ->
            pool.submit {
                go.await()
                for (i in 0 until perThread) {
                    val who = if ((i + t) % 2 == 0) c.alice else c.bob
                    val (target, expected) = when (i % 4) {
                        0 -> "/courses/$i" to if (who == c.alice) 200 else 403
                        1 -> "/admin/s$i" to 403
                        2 -> "/courses/$i/" to 400
                        else -> "/courses/$i" to if (who == c.alice) 200 else 403
                    }
                    // Half the threads on the frontends' hot path, half through UniFFI's calls.
                    val d = if (t % 2 == 0) fast.authorize("GET", target, "Bearer ${tokens.getValue(who)}") else a.authorize("GET", target, tokens.getValue(who))
                    val ok = when (d) {
                        is Decision.Allowed -> expected == 200 && d.grant.subject == who && d.grant.params["id"] == "$i"
                        is Decision.Refused -> d.refusal.status == expected
                    }
                    if (!ok) wrong.incrementAndGet()
                }
            }
        }
        go.countDown()
        done.forEach { it.get(120, TimeUnit.SECONDS) }
        pool.shutdown()
        assertEquals(0, wrong.get(), "wrong answers under $threads concurrent callers")
    }

    @Test
    fun `suspend form answers as the blocking one`() = runBlocking {
        val (stack, c) = setUp()
        val a = ready(settings(stack, c.key))
        val alice = idp.token(c.alice)
        val d = a.authorizeAsync("GET", "/courses/5", alice) as Decision.Allowed
        assertEquals(mapOf("id" to "5"), d.grant.params)
        val r = a.authorizeRequestAsync("GET", "/admin/x", "Bearer $alice") as Decision.Refused
        assertEquals(403, r.refusal.status)
    }

    @Test
    fun `closed and reopened`() {
        val (stack, c) = setUp()
        val alice = idp.token(c.alice)
        val first = Authorizer(settings(stack, c.key))
        assertTrue(first.waitReady(20.0))
        assertEquals(200, first.status("GET", "/courses/1", alice))
        val fast = FastAuthorizer(first)
        assertTrue(fast.authorize("GET", "/courses/1", "Bearer $alice") is Decision.Allowed)
        first.shutdown()
        assertThrows<HeimdallException.Unavailable> { fast.authorize("GET", "/courses/1", "Bearer $alice") }
        val e = assertThrows<HeimdallException.Unavailable> { first.authorize("GET", "/courses/1", alice) }
        assertEquals(503, e.status)
        assertEquals("unavailable", e.code)
        first.close()
        val second = ready(settings(stack, c.key))
        assertEquals(200, second.status("GET", "/courses/1", alice))
    }

    @Test
    fun `configuration mistakes are errors that name them`() {
        val e = assertThrows<HeimdallException.Config> {
            Authorizer(AuthorizerSettings(jwksUrl = idp.jwksUrl, heimdallUrl = "http://127.0.0.1:1"))
        }
        assertTrue("credential" in e.message.orEmpty(), e.message)
        assertEquals(500, e.status)
        val unmapped = assertThrows<HeimdallException.Config> {
            Authorizer(AuthorizerSettings(jwksUrl = idp.jwksUrl, heimdallUrl = "http://127.0.0.1:1", credential = "k", unmapped = "maybe"))
        }
        assertTrue("unmapped" in unmapped.message.orEmpty(), unmapped.message)
        val plain = assertThrows<HeimdallException.Config> {
            Authorizer(AuthorizerSettings(jwksUrl = idp.jwksUrl, heimdallUrl = "http://heimdall.example", credential = "k"))
        }
        assertTrue("http" in plain.message.orEmpty(), plain.message)
    }
}
