package dev.heimdall.jvm

import dev.heimdall.jvm.harness.AUDIENCE
import dev.heimdall.jvm.harness.Http
import dev.heimdall.jvm.harness.ISSUER
import dev.heimdall.jvm.harness.Idp
import dev.heimdall.jvm.harness.Stack
import dev.heimdall.jvm.harness.freePort
import dev.heimdall.jvm.harness.heimdallBin
import dev.heimdall.jvm.harness.stopProcess
import dev.heimdall.jvm.harness.waitUntil
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.nio.file.Path
import java.time.Duration

/**
 * The README's Spring Boot and Ktor quick starts work as written: the README shows exactly the files under
 * src/test/kotlin/quickstart/, and each runs here as its own JVM, configured only by the environment variables
 * the README names, in front of a real heimdall-http.
 */
class QuickStartTest {
    @TempDir
    lateinit var tmp: Path

    private val readme: String = File("../README.md").readText()

    /** The README's code block after the marker `<!-- quickstart: NAME -->`. */
    private fun readmeBlock(name: String): String {
        val at = readme.indexOf("<!-- quickstart: $name -->")
        check(at >= 0) { "the README has no quick start marked $name" }
        val open = readme.indexOf("```kotlin\n", at) + "```kotlin\n".length
        return readme.substring(open, readme.indexOf("```", open))
    }

    private fun runQuickStart(name: String, source: String, mainClass: String, args: (Int) -> List<String>) {
        assertEquals(File(source).readText(), readmeBlock(name), "the README's $name quick start is not $source")
        Idp().use { idp ->
            Stack(heimdallBin(), idp, tmp.resolve("stack")).use { stack ->
                val rest = stack.rest
                rest.role("orders:reader", "orders:read")
                rest.group("orders:readers")
                rest.groupRole("orders:readers", "orders:reader")
                rest.addMember("orders:readers", "alice")
                rest.mapping("GET", "/orders/:id", "orders:read")
                val key = rest.apiKey("orders-service", listOf("mappings:read", "grants:read"))
                val port = freePort()
                val java = File(System.getProperty("java.home"), "bin/java").path
                val pb = ProcessBuilder(listOf(java, "-cp", System.getProperty("surefire.test.class.path"), mainClass) + args(port))
                pb.environment().putAll(
                    mapOf(
                        "KEYCLOAK_JWKS_URL" to idp.jwksUrl,
                        "JWT_ISSUER" to ISSUER,
                        "JWT_AUDIENCE" to AUDIENCE,
                        "HEIMDALL_URL" to stack.base,
                        "HEIMDALL_CREDENTIAL" to key,
                        "PORT" to port.toString(),
                    ),
                )
                val log = tmp.resolve("$name.log").toFile()
                val app = pb.redirectErrorStream(true).redirectOutput(log).start()
                try {
                    val base = "http://127.0.0.1:$port"
                    val alice = mapOf("Authorization" to "Bearer ${idp.token("alice")}")
                    val ok = waitUntil("the $name quick start answering", Duration.ofSeconds(60), Duration.ofMillis(200)) {
                        check(app.isAlive) { "the $name quick start exited: ${log.readText()}" }
                        Http.get("$base/orders/7", alice).takeIf { it.statusCode() == 200 }
                    }
                    assertEquals("order 7 for alice (orders:read)", ok.body())
                    val denied = Http.get("$base/orders/7", mapOf("Authorization" to "Bearer ${idp.token("bob")}"))
                    assertEquals(403, denied.statusCode())
                    assertTrue(denied.body().startsWith("{\"error\":{\"code\":\"forbidden\""), denied.body())
                    val anonymous = Http.get("$base/orders/7")
                    assertEquals(401, anonymous.statusCode())
                    assertEquals("Bearer", anonymous.headers().firstValue("WWW-Authenticate").orElse(""))
                    assertEquals(400, Http.get("$base/orders/%37", alice).statusCode(), "a needless escape")
                } finally {
                    stopProcess(app)
                }
            }
        }
    }

    @Test
    fun `the Spring Boot quick start`() = runQuickStart(
        "spring",
        "src/test/kotlin/quickstart/spring/OrdersApplication.kt",
        "quickstart.spring.OrdersApplicationKt",
    ) { port -> listOf("--server.port=$port", "--server.address=127.0.0.1") }

    @Test
    fun `the Ktor quick start`() = runQuickStart(
        "ktor",
        "src/test/kotlin/quickstart/ktor/Orders.kt",
        "quickstart.ktor.OrdersKt",
    ) { _ -> emptyList() }
}
