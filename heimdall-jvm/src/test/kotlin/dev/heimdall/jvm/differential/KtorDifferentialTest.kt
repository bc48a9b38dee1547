// Proves, for a Ktor application on Netty behind HeimdallPlugin, that what is authorised is what is routed:
// thousands of raw request targets, for every one either the plugin (or Netty, or Ktor's routing) refuses it,
// or the route handler that runs is the route whose mapping the grant was decided on; with unmapped = "deny"
// and "allow", with and without AutoHeadResponse (Heimdall resolves HEAD on GET mappings; Ktor routes HEAD to
// GET routes only with that plugin, and the plugin refuses HEAD without it). A self-check shows the same check catches a naive decision made on the
// decoded path.
package dev.heimdall.jvm.differential

import dev.heimdall.jvm.HeimdallPlugin
import dev.heimdall.jvm.harness.heimdallBin
import dev.heimdall.jvm.heimdallGrant
import dev.heimdall.jvm.jsonBody
import dev.heimdall.uniffi.Decision
import dev.heimdall.uniffi.Refusal
import io.ktor.http.ContentType
import io.ktor.http.HttpStatusCode
import io.ktor.http.decodeURLPart
import io.ktor.server.application.Application
import io.ktor.server.application.ApplicationCallPipeline
import io.ktor.server.application.install
import io.ktor.server.engine.EmbeddedServer
import io.ktor.server.engine.embeddedServer
import io.ktor.server.netty.Netty
import io.ktor.server.netty.NettyApplicationEngine
import io.ktor.server.plugins.autohead.AutoHeadResponse
import io.ktor.server.request.header
import io.ktor.server.request.path
import io.ktor.server.request.uri
import io.ktor.server.response.header
import io.ktor.server.response.respondText
import io.ktor.server.routing.RoutingContext
import io.ktor.server.routing.get
import io.ktor.server.routing.post
import io.ktor.server.routing.route
import io.ktor.server.routing.routing
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.io.TempDir
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource
import java.nio.file.Path

/** The routes of [ROUTES] (same paths as their `ktorPath`), each answering with its route name and recording
 *  itself and the call's grant in [ledger]. */
private fun Application.differentialRoutes(ledger: Ledger) {
    suspend fun RoutingContext.answer(route: String) {
        val grant = call.heimdallGrant
        ledger.record(call.request.header("X-Probe"), HandlerRun(route, grant, call.request.local.method.value, call.request.uri))
        markers(route, grant).forEach { (name, value) -> call.response.header(name, value) }
        call.respondText(route)
    }
    routing {
        get("/") { answer("root") }
        post("/v1/jobs:purge") { answer("jobs_purge") }
        get("/v1/jobs/{id}") { answer("jobs_get") }
        route("/v1/{first}/{rest...}") { handle { answer("v1_any") } }
        get("/users/@me") { answer("users_me") }
        get("/users/{name}") { answer("users_get") }
        get("/files/{name}") { answer("files_get") }
        get("/files/café") { answer("files_cafe") }
        post("/admin/users") { answer("admin_users") }
        get(Regex("/reports/(?<n>[0-9]+)")) { answer("reports_get") }
        get("/public/health") { answer("public_health") }
    }
}

/** A Ktor app on Netty, 127.0.0.1, a free port: [gate] first, then the routes. */
private class KtorApp(ledger: Ledger, gate: Application.() -> Unit) : AutoCloseable {
    private val server: EmbeddedServer<NettyApplicationEngine, NettyApplicationEngine.Configuration> =
        embeddedServer(Netty, port = 0, host = "127.0.0.1") {
            gate()
            differentialRoutes(ledger)
        }.start(wait = false)

    val port: Int = runBlocking { server.engine.resolvedConnectors().first().port }

    override fun close() = server.stop(100, 2_000)
}

/**
 * A DELIBERATELY NAIVE stand-in for HeimdallPlugin (test-only): decides on the percent-decoded request path,
 * with [NaiveStandInDecision], instead of the raw request target.
 */
private fun Application.naiveDecodedPathGate(naive: NaiveStandInDecision) {
    intercept(ApplicationCallPipeline.Plugins) {
        val call = context
        val decoded = runCatching { call.request.path().decodeURLPart() }.getOrNull()
        val decision = if (decoded == null) {
            Decision.Refused(Refusal(400, "invalid_input", "bad percent-escape"))
        } else {
            naive.decide(call.request.local.method.value, decoded)
        }
        when (decision) {
            is Decision.Allowed -> call.attributes.put(HeimdallPlugin.GrantKey, decision.grant)
            is Decision.Refused -> {
                call.respondText(decision.refusal.jsonBody(), ContentType.Application.Json, HttpStatusCode.fromValue(decision.refusal.status))
                finish()
            }
        }
    }
}

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class KtorDifferentialTest {
    private lateinit var world: World

    @BeforeAll
    fun startWorld(@TempDir dir: Path) {
        world = World(heimdallBin(), dir)
    }

    @AfterAll
    fun stopWorld() {
        if (::world.isInitialized) world.close()
    }

    private fun runsOnlyWhatWasAuthorised(unmapped: String, autoHead: Boolean) {
        val ledger = Ledger()
        val authorizer = world.authorizer(unmapped)
        val app = KtorApp(ledger) {
            install(HeimdallPlugin) { this.authorizer = authorizer }
            if (autoHead) install(AutoHeadResponse)
        }
        val name = "ktor${if (autoHead) "+autohead" else ""} unmapped=$unmapped"
        val report = app.use { drive(name, it.port, ledger, world) }
        report.print()
        assertTrue(report.mismatches.isEmpty(), "${report.mismatches.size} requests ran another handler than the one authorised:\n" + report.mismatches.take(40).joinToString("\n"))
        assertCanonicalRouting(report, unmapped, headRunsGetHandlers = autoHead)
    }

    @ParameterizedTest(name = "unmapped = {0}")
    @ValueSource(strings = ["deny", "allow"])
    fun `Ktor with AutoHeadResponse runs only the handler that was authorised`(unmapped: String) =
        runsOnlyWhatWasAuthorised(unmapped, autoHead = true)

    // Without AutoHeadResponse, Ktor routes HEAD to head() routes and to routes for every method, never to get()
    // routes, while core resolves HEAD on GET mappings before ANY ones (HEAD /v1/jobs/7 would be authorised on
    // GET /v1/jobs/:id and run the catch-all): the plugin refuses HEAD there.
    @ParameterizedTest(name = "unmapped = {0}")
    @ValueSource(strings = ["deny", "allow"])
    fun `Ktor without AutoHeadResponse runs only the handler that was authorised`(unmapped: String) =
        runsOnlyWhatWasAuthorised(unmapped, autoHead = false)

    @Test
    fun `the check is not vacuous - a naive decision on the decoded path is caught`() {
        val ledger = Ledger()
        val naive = NaiveStandInDecision(world.resolver(), "deny")
        val app = KtorApp(ledger) {
            naiveDecodedPathGate(naive)
            install(AutoHeadResponse)
        }
        val report = app.use { drive("ktor+autohead naive-decoded-path", it.port, ledger, world) }
        report.print()
        assertTrue(report.wrongHandlers.isNotEmpty(), "the naive stand-in went unnoticed: the check would not catch a confusion")
    }
}
