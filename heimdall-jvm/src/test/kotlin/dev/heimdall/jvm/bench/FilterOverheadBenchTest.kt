// jvm_filter: the Servlet filter's overhead on a minimal Spring Boot endpoint, in process. One Spring Boot
// application (embedded Tomcat on 127.0.0.1, a random port) serves one trivial handler at /open/hello and at
// /guarded/hello; HeimdallFilter is registered for /guarded/* only, with an Authorizer following a real
// heimdall-http (the harness's Stack) and deciding locally. A JDK HttpClient in the same JVM (HTTP/1.1, one
// keep-alive connection) sends the same request, with the same bearer token, to both paths in alternation; the
// median latency of each is printed: app_us without the filter, with_filter_us with it (warm: token and decision
// cached). Both answers are checked on every request. No target: both figures are reported.
package dev.heimdall.jvm.bench

import dev.heimdall.jvm.HeimdallFilter
import dev.heimdall.jvm.harness.AUDIENCE
import dev.heimdall.jvm.harness.ISSUER
import dev.heimdall.jvm.harness.Idp
import dev.heimdall.jvm.harness.Stack
import dev.heimdall.jvm.harness.courses
import dev.heimdall.jvm.harness.heimdallBin
import dev.heimdall.jvm.harness.waitUntil
import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.AuthorizerSettings
import dev.heimdall.uniffi.Decision
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Tag
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import org.springframework.boot.SpringBootConfiguration
import org.springframework.boot.autoconfigure.EnableAutoConfiguration
import org.springframework.boot.builder.SpringApplicationBuilder
import org.springframework.boot.web.server.context.WebServerApplicationContext
import org.springframework.boot.web.servlet.FilterRegistrationBean
import org.springframework.context.ConfigurableApplicationContext
import org.springframework.context.annotation.Bean
import org.springframework.context.annotation.Import
import org.springframework.context.support.GenericApplicationContext
import org.springframework.web.bind.annotation.GetMapping
import org.springframework.web.bind.annotation.RestController
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Path
import java.time.Duration

/** The application: one handler on two paths, the filter on one of them. */
@SpringBootConfiguration(proxyBeanMethods = false)
@EnableAutoConfiguration
@Import(FilterBenchApp.Hello::class)
class FilterBenchApp {
    @RestController
    class Hello {
        @GetMapping("/open/hello", "/guarded/hello")
        fun hello(): String = "hello"
    }

    @Bean
    fun heimdallFilter(authorizer: Authorizer): FilterRegistrationBean<HeimdallFilter> =
        FilterRegistrationBean(HeimdallFilter(authorizer)).apply { addUrlPatterns("/guarded/*") }
}

@Tag("bench")
class FilterOverheadBenchTest {
    private companion object {
        const val WARMUP_ROUNDS = 3_000
        const val ROUNDS = 8_000
        const val BUDGET_SECONDS = 12.0
    }

    @TempDir
    lateinit var tmp: Path

    @Test
    fun jvmFilter() {
        val started = System.nanoTime()
        val binary = heimdallBin()
        Idp().use { idp ->
            Stack(binary, idp, tmp.resolve("stack")).use { stack ->
                val c = courses(stack)
                stack.rest.mapping("GET", "/guarded/hello", "course:read")
                val settings = AuthorizerSettings(
                    jwksUrl = idp.jwksUrl,
                    heimdallUrl = stack.base,
                    credential = c.key,
                    issuer = ISSUER,
                    audience = AUDIENCE,
                    decisionTtl = 300.0,
                )
                Authorizer(settings).use { authorizer ->
                    assertTrue(authorizer.waitReady(20.0), "the authorizer loaded no snapshot")
                    val token = idp.token(c.alice, ttlSeconds = 3600)
                    waitUntil("alice allowed on /guarded/hello", Duration.ofSeconds(15)) {
                        authorizer.authorize("GET", "/guarded/hello", token) as? Decision.Allowed
                    }
                    app(authorizer).use { ctx -> measure(ctx, authorizer, token, started) }
                }
            }
        }
    }

    private fun app(authorizer: Authorizer): ConfigurableApplicationContext =
        SpringApplicationBuilder(FilterBenchApp::class.java)
            .properties(
                "server.address=127.0.0.1",
                "server.port=0",
                "spring.main.banner-mode=off",
                "spring.main.log-startup-info=false",
                // Spring's console log goes to stdout, which holds only the benchmark's line.
                "logging.level.root=WARN",
            )
            .initializers({ ctx -> (ctx as GenericApplicationContext).beanFactory.registerSingleton("authorizer", authorizer) })
            .run()

    private fun measure(ctx: ConfigurableApplicationContext, authorizer: Authorizer, token: String, started: Long) {
        val port = checkNotNull((ctx as WebServerApplicationContext).webServer) { "no embedded server" }.port
        val client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build()
        fun request(path: String, authorization: String?): HttpRequest =
            HttpRequest.newBuilder(URI.create("http://127.0.0.1:$port$path")).GET()
                .apply { if (authorization != null) header("Authorization", authorization) }
                .build()
        val open = request("/open/hello", "Bearer $token")
        val guarded = request("/guarded/hello", "Bearer $token")

        // The filter guards /guarded/* and only that.
        val anonymousGuarded = client.send(request("/guarded/hello", null), HttpResponse.BodyHandlers.ofString())
        assertEquals(401, anonymousGuarded.statusCode(), anonymousGuarded.body())
        assertEquals(200, client.send(request("/open/hello", null), HttpResponse.BodyHandlers.ofString()).statusCode())

        fun timed(r: HttpRequest): Long {
            val start = System.nanoTime()
            val response = client.send(r, HttpResponse.BodyHandlers.ofString())
            val took = System.nanoTime() - start
            if (response.statusCode() != 200 || response.body() != "hello") {
                throw AssertionError("${r.uri()}: ${response.statusCode()} ${response.body()}")
            }
            return took
        }

        // Alternating, so that both paths see the same machine, JIT and connection state.
        repeat(WARMUP_ROUNDS) {
            timed(open)
            timed(guarded)
        }
        val allowedBefore = authorizer.stats().allowed
        val appNs = LongArray(ROUNDS)
        val filterNs = LongArray(ROUNDS)
        val deadline = System.nanoTime() + (BUDGET_SECONDS * 1e9).toLong()
        var rounds = 0
        while (rounds < ROUNDS && (rounds < 100 || System.nanoTime() < deadline)) {
            appNs[rounds] = timed(open)
            filterNs[rounds] = timed(guarded)
            rounds++
        }
        val allowed = authorizer.stats().allowed - allowedBefore
        assertEquals(rounds.toLong(), allowed, "the filter let through every guarded request, and only those")

        val app = appNs.copyOf(rounds).sorted()
        val withFilter = filterNs.copyOf(rounds).sorted()
        fun us(sorted: List<Long>, q: Double) = sorted[((sorted.size - 1) * q).toInt()] / 1000.0
        detail(fmt("%d requests on each path after %d warm-up rounds", rounds, WARMUP_ROUNDS))
        detail(fmt("app alone:   median %.1f us, p10 %.1f, p90 %.1f, p99 %.1f", us(app, 0.5), us(app, 0.1), us(app, 0.9), us(app, 0.99)))
        detail(fmt("with filter: median %.1f us, p10 %.1f, p90 %.1f, p99 %.1f", us(withFilter, 0.5), us(withFilter, 0.1), us(withFilter, 0.9), us(withFilter, 0.99)))
        detail(fmt("the filter adds %.1f us by the medians", us(withFilter, 0.5) - us(app, 0.5)))
        // The decision alone, as the filter makes it (the header form), warm, on this thread.
        val header = "Bearer $token"
        val fast = dev.heimdall.jvm.FastAuthorizer(authorizer)
        val alone = timeBatches(20, 100, 200, 3.0) {
            (fast.authorize("GET", "/guarded/hello", header) as? Decision.Allowed)?.grant?.mappingId ?: -1L
        }
        detail("FastAuthorizer.authorize alone (what the filter calls), warm: $alone")
        detail(fmt("took %.1f s; load average %s", (System.nanoTime() - started) / 1e9, loadAverage()))
        println(fmt("jvm_filter: app_us=%.1f with_filter_us=%.1f", us(app, 0.5), us(withFilter, 0.5)))
    }
}
