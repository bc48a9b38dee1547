// Proves, for a Spring Boot 4 (Spring MVC, embedded Tomcat) application behind HeimdallFilter, that what is
// authorised is what is routed: thousands of raw request targets, for every one either the filter (or Tomcat,
// or Spring) refuses it, or the controller method that runs is the route whose mapping the grant was decided
// on; with unmapped = "deny" and "allow". A self-check shows the same check catches a naive decision made on
// the decoded, normalised servlet path.
package dev.heimdall.jvm.differential

import dev.heimdall.jvm.GRANT_ATTRIBUTE
import dev.heimdall.jvm.HeimdallFilter
import dev.heimdall.jvm.harness.heimdallBin
import dev.heimdall.jvm.jsonBody
import dev.heimdall.uniffi.Decision
import jakarta.servlet.Filter
import jakarta.servlet.FilterChain
import jakarta.servlet.ServletRequest
import jakarta.servlet.ServletResponse
import jakarta.servlet.http.HttpServletRequest
import jakarta.servlet.http.HttpServletResponse
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.io.TempDir
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource
import org.springframework.boot.SpringBootConfiguration
import org.springframework.boot.autoconfigure.EnableAutoConfiguration
import org.springframework.boot.builder.SpringApplicationBuilder
import org.springframework.boot.web.server.context.WebServerApplicationContext
import org.springframework.boot.web.servlet.FilterRegistrationBean
import org.springframework.context.ApplicationContextInitializer
import org.springframework.context.ConfigurableApplicationContext
import org.springframework.context.annotation.Import
import org.springframework.context.support.GenericApplicationContext
import org.springframework.core.Ordered
import org.springframework.http.ResponseEntity
import org.springframework.web.bind.annotation.GetMapping
import org.springframework.web.bind.annotation.PostMapping
import org.springframework.web.bind.annotation.RequestMapping
import org.springframework.web.bind.annotation.RestController
import org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerMapping
import java.nio.file.Path
import java.util.function.Supplier

/** The controllers: one method per route of [ROUTES] (same paths as its `springPath`), each answering with
 *  its route name and recording itself and the request's grant in the [Ledger]. */
@RestController
class SpringRoutes(private val ledger: Ledger) {
    private fun answer(route: String, request: HttpServletRequest): ResponseEntity<String> {
        val grant = HeimdallFilter.grantOf(request)
        ledger.record(request.getHeader("X-Probe"), HandlerRun(route, grant, request.method, request.requestURI))
        val response = ResponseEntity.ok()
        markers(route, grant).forEach { (name, value) -> response.header(name, value) }
        return response.body(route)
    }

    @GetMapping("/") fun root(request: HttpServletRequest) = answer("root", request)
    @PostMapping("/v1/jobs:purge") fun jobsPurge(request: HttpServletRequest) = answer("jobs_purge", request)
    @GetMapping("/v1/jobs/{id}") fun jobsGet(request: HttpServletRequest) = answer("jobs_get", request)
    @RequestMapping("/v1/{first}/**") fun v1Any(request: HttpServletRequest) = answer("v1_any", request)
    @GetMapping("/users/@me") fun usersMe(request: HttpServletRequest) = answer("users_me", request)
    @GetMapping("/users/{name}") fun usersGet(request: HttpServletRequest) = answer("users_get", request)
    @GetMapping("/files/{name}") fun filesGet(request: HttpServletRequest) = answer("files_get", request)
    @GetMapping("/files/café") fun filesCafe(request: HttpServletRequest) = answer("files_cafe", request)
    @PostMapping("/admin/users") fun adminUsers(request: HttpServletRequest) = answer("admin_users", request)
    @GetMapping("/reports/{n:[0-9]+}") fun reportsGet(request: HttpServletRequest) = answer("reports_get", request)
    @GetMapping("/public/health") fun publicHealth(request: HttpServletRequest) = answer("public_health", request)
}

/** A minimal Spring Boot application: auto-configured Spring MVC on embedded Tomcat, and [SpringRoutes]. */
@SpringBootConfiguration(proxyBeanMethods = false)
@EnableAutoConfiguration
@Import(SpringRoutes::class)
class SpringDifferentialApp

/** The app on 127.0.0.1 (a free port) with [gate] registered for every URL, in Spring Boot's default place (the
 *  last filter, after those that wrap the request: what the quick start does), or at [order]. */
private class SpringApp(
    gate: Filter,
    ledger: Ledger,
    extraProperties: Map<String, String> = emptyMap(),
    order: Int = Ordered.LOWEST_PRECEDENCE,
) : AutoCloseable {
    val context: ConfigurableApplicationContext = SpringApplicationBuilder(SpringDifferentialApp::class.java)
        .properties(
            mapOf(
                "server.address" to "127.0.0.1",
                "server.port" to "0",
                "spring.main.banner-mode" to "off",
                "spring.jmx.enabled" to "false",
                "logging.level.root" to "ERROR",
            ) + extraProperties,
        )
        .initializers(
            ApplicationContextInitializer<ConfigurableApplicationContext> { ctx ->
                val generic = ctx as GenericApplicationContext
                generic.registerBean(Ledger::class.java, Supplier { ledger })
                generic.registerBean("heimdallGate", FilterRegistrationBean::class.java, Supplier {
                    FilterRegistrationBean(gate).apply {
                        this.order = order
                        addUrlPatterns("/*")
                    }
                })
            },
        )
        .run()

    val port: Int = (context as WebServerApplicationContext).webServer!!.port

    override fun close() = context.close()
}

/**
 * A DELIBERATELY NAIVE stand-in for HeimdallFilter (test-only): decides on `request.servletPath`, the path
 * Tomcat has already decoded, stripped of `;` parameters and normalised, with [NaiveStandInDecision].
 */
private class NaiveServletPathFilter(private val naive: NaiveStandInDecision) : Filter {
    override fun doFilter(req: ServletRequest, res: ServletResponse, chain: FilterChain) {
        val request = req as HttpServletRequest
        val response = res as HttpServletResponse
        when (val decision = naive.decide(request.method, request.servletPath)) {
            is Decision.Allowed -> {
                request.setAttribute(GRANT_ATTRIBUTE, decision.grant)
                chain.doFilter(req, res)
            }
            is Decision.Refused -> {
                response.status = decision.refusal.status
                response.contentType = "application/json"
                response.outputStream.write(decision.refusal.jsonBody().toByteArray())
            }
        }
    }
}

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SpringDifferentialTest {
    private lateinit var world: World

    @BeforeAll
    fun startWorld(@TempDir dir: Path) {
        world = World(heimdallBin(), dir)
    }

    @AfterAll
    fun stopWorld() {
        if (::world.isInitialized) world.close()
    }

    @ParameterizedTest(name = "unmapped = {0}")
    @ValueSource(strings = ["deny", "allow"])
    fun `Spring MVC runs only the handler that was authorised`(unmapped: String) {
        val ledger = Ledger()
        val report = SpringApp(HeimdallFilter(world.authorizer(unmapped)), ledger).use { app ->
            assertEquals(
                ROUTES.map { it.springPath }.toSet(),
                app.context.getBean("requestMappingHandlerMapping", RequestMappingHandlerMapping::class.java)
                    .handlerMethods.filterValues { it.beanType == SpringRoutes::class.java }.keys.flatMap { it.patternValues }.toSet(),
                "the controllers are the route table",
            )
            drive("spring unmapped=$unmapped", app.port, ledger, world)
        }
        report.print()
        assertTrue(report.mismatches.isEmpty(), "${report.mismatches.size} requests ran another handler than the one authorised:\n" + report.mismatches.take(40).joinToString("\n"))
        assertCanonicalRouting(report, unmapped, headRunsGetHandlers = true)
    }

    /** POST /v1/jobs:purge with the form field `_method=PUT`, which Spring's HiddenHttpMethodFilter turns into a
     *  PUT: the handler that ran and the mapping the grant names. */
    private fun hiddenMethodRun(order: Int): Pair<String?, String?> {
        val ledger = Ledger()
        val properties = mapOf("spring.mvc.hiddenmethod.filter.enabled" to "true")
        return SpringApp(HeimdallFilter(world.authorizer("deny")), ledger, properties, order).use { app ->
            val body = "_method=PUT"
            val request = "POST /v1/jobs:purge HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${world.token}\r\n" +
                "X-Probe: hidden\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n" +
                "Connection: close\r\n\r\n$body"
            java.net.Socket("127.0.0.1", app.port).use { s ->
                s.getOutputStream().write(request.toByteArray())
                s.getInputStream().readAllBytes()
            }
            val run = ledger.runsOf("hidden").singleOrNull()
            run?.route to run?.grant?.mappingId?.let { world.routeOfMapping[it] }
        }
    }

    @Test
    fun `a method Spring rewrites (HiddenHttpMethodFilter) is authorised as rewritten`() {
        val (ran, authorised) = hiddenMethodRun(Ordered.LOWEST_PRECEDENCE)
        assertEquals("v1_any", ran, "Spring routes the rewritten PUT to the catch-all")
        assertEquals(ran, authorised, "the filter authorised another route than the one that ran")
        // Registered before the rewriting filter, it would decide on the POST: the check sees that.
        val (ranFirst, authorisedFirst) = hiddenMethodRun(Ordered.HIGHEST_PRECEDENCE)
        assertEquals("v1_any", ranFirst)
        assertEquals("jobs_purge", authorisedFirst, "a filter ahead of HiddenHttpMethodFilter decides on the POST")
    }

    @Test
    fun `the check is not vacuous - a naive decision on the servlet path is caught`() {
        val ledger = Ledger()
        val naive = NaiveServletPathFilter(NaiveStandInDecision(world.resolver(), "deny"))
        val report = SpringApp(naive, ledger).use { app -> drive("spring naive-servlet-path", app.port, ledger, world) }
        report.print()
        assertTrue(report.wrongHandlers.isNotEmpty(), "the naive stand-in went unnoticed: the check would not catch a confusion")
    }
}
