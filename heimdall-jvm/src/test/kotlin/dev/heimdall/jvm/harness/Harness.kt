// Processes the JVM tests start, each on 127.0.0.1 only and each stopped by its own PID (the Kotlin twin of
// heimdall-py/tests/harness.py):
// - Idp: a JWKS on loopback (one RSA key, kid "jvm-1") and an RS256 token minter (the JDK's own crypto);
// - Cerbos: the real Cerbos PDP (HEIMDALL_CERBOS_BIN) under `timeout --kill-after=5 900`;
// - HeimdallProcess: the heimdall binary (HEIMDALL_BIN) as serve, worker or install-policies;
// - Stack: a heimdall-http (and, on Cerbos, its push worker) on a fresh SQLite database, with a REST client.
package dev.heimdall.jvm.harness

import com.sun.net.httpserver.HttpServer
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Assumptions
import java.io.File
import java.math.BigInteger
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.nio.file.Path
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.Signature
import java.security.interfaces.RSAPublicKey
import java.time.Duration
import java.util.Base64
import java.util.UUID
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

const val ISSUER = "https://idp.heimdall-jvm.test/realms/test"
const val AUDIENCE = "heimdall"
const val SUPERADMIN = "root"
private const val KID = "jvm-1"

// The Admin API credentials of every test PDP: the same as heimdall-core's test_utils/cerbos.rs.
const val CERBOS_ADMIN_USER = "heimdall"
const val CERBOS_ADMIN_PASSWORD = "heimdall-test-admin"
private const val CERBOS_ADMIN_PASSWORD_HASH_B64 =
    "JDJiJDA0JGwzVC83TWFkbXNubjhqR1RXOHhyL085OWE1THl3YXBRUFBWNllDZm9UdEhPdlpyRkJpTmg2"

/** The executable named by [variable]: a test that needs a missing one fails under CI=true, and is skipped,
 *  loudly, elsewhere. */
fun requiredBinary(variable: String, what: String): String {
    val path = System.getenv(variable).orEmpty()
    val why = when {
        path.isEmpty() -> "$variable is not set"
        !File(path).canExecute() -> "$variable=$path is not an executable file"
        else -> return path
    }
    if (System.getenv("CI") == "true") fail<Unit>("$why: $what (CI=true: these tests must run in CI)")
    System.err.println("NOT RUN: $why: $what")
    Assumptions.abort<Unit>("NOT RUN: $why: $what")
    error("unreachable")
}

fun heimdallBin(): String = requiredBinary("HEIMDALL_BIN", "set it to the built heimdall-http binary (target/debug/heimdall)")

fun cerbosBin(): String =
    requiredBinary("HEIMDALL_CERBOS_BIN", "set it to the binary of the npm package @cerbos/cerbos-linux-x64@0.55.0")

fun freePort(): Int = ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }

/** Calls [probe] until it returns non-null (returned), for at most [timeout]. */
fun <T : Any> waitUntil(what: String, timeout: Duration, interval: Duration = Duration.ofMillis(20), probe: () -> T?): T {
    val deadline = System.nanoTime() + timeout.toNanos()
    var last: Throwable? = null
    while (true) {
        try {
            probe()?.let { return it }
        } catch (e: Exception) {
            last = e
        }
        if (System.nanoTime() >= deadline) throw AssertionError("$what: not within $timeout" + (last?.let { " (last error: $it)" } ?: ""))
        Thread.sleep(interval.toMillis())
    }
}

private val b64url: Base64.Encoder = Base64.getUrlEncoder().withoutPadding()

private fun unsigned(n: BigInteger): ByteArray = n.toByteArray().let { if (it[0] == 0.toByte()) it.copyOfRange(1, it.size) else it }

/** The identity provider: a JWKS on loopback ([jwksUrl]) and the key that signs its tokens. */
class Idp : AutoCloseable {
    private val key: KeyPair = KeyPairGenerator.getInstance("RSA").apply { initialize(2048) }.generateKeyPair()
    private val otherKey: KeyPair = KeyPairGenerator.getInstance("RSA").apply { initialize(2048) }.generateKeyPair()
    private val server: HttpServer = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
    val jwksUrl: String

    init {
        val pub = key.public as RSAPublicKey
        val body = """{"keys":[{"kty":"RSA","kid":"$KID","alg":"RS256","use":"sig","n":"${b64url.encodeToString(unsigned(pub.modulus))}","e":"${b64url.encodeToString(unsigned(pub.publicExponent))}"}]}"""
            .toByteArray()
        server.createContext("/certs") { exchange ->
            exchange.responseHeaders.add("Content-Type", "application/json")
            exchange.sendResponseHeaders(200, body.size.toLong())
            exchange.responseBody.use { it.write(body) }
        }
        server.executor = java.util.concurrent.Executors.newFixedThreadPool(2) { r -> Thread(r, "jwks").apply { isDaemon = true } }
        server.start()
        jwksUrl = "http://127.0.0.1:${server.address.port}/certs"
    }

    /** A token for [subject] (its preferred_username, Heimdall's subject), valid for [ttlSeconds] (negative:
     *  expired that long ago). */
    fun token(subject: String, ttlSeconds: Long = 600, issuer: String = ISSUER, otherKey: Boolean = false): String {
        val now = System.currentTimeMillis() / 1000
        val header = """{"alg":"RS256","typ":"JWT","kid":"$KID"}"""
        val claims = """{"sub":"id-$subject","preferred_username":"$subject","iss":"$issuer","aud":"$AUDIENCE",""" +
            """"iat":${now - 60 + minOf(0, ttlSeconds)},"exp":${now + ttlSeconds},"jti":"${UUID.randomUUID()}"}"""
        val signingInput = b64url.encodeToString(header.toByteArray()) + "." + b64url.encodeToString(claims.toByteArray())
        val signer = Signature.getInstance("SHA256withRSA")
        signer.initSign((if (otherKey) this.otherKey else key).private)
        signer.update(signingInput.toByteArray())
        return signingInput + "." + b64url.encodeToString(signer.sign())
    }

    /** The settings with which a heimdall-http trusts this provider. */
    fun env(): Map<String, String> = mapOf("KEYCLOAK_JWKS_URL" to jwksUrl, "JWT_ISSUER" to ISSUER, "JWT_AUDIENCE" to AUDIENCE)

    override fun close() = server.stop(0)
}

/** SIGTERM to [process], then SIGKILL after [grace]; its exit status. */
fun stopProcess(process: Process, grace: Duration = Duration.ofSeconds(5)): Int {
    if (process.isAlive) {
        process.destroy()
        if (!process.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS)) {
            process.descendants().forEach { it.destroyForcibly() }
            process.destroyForcibly()
            process.waitFor(10, TimeUnit.SECONDS)
        }
    }
    return process.exitValue()
}

/** The real Cerbos PDP on free loopback ports, its policies in a sqlite3 file under [workdir]. */
class Cerbos(private val binary: String, private val workdir: Path) : AutoCloseable {
    val httpPort = freePort()
    private val logFile = workdir.resolve("cerbos.log").toFile()
    private var process: Process? = null
    val baseUrl get() = "http://127.0.0.1:$httpPort"

    init {
        Files.createDirectories(workdir)
        var grpcPort = freePort()
        while (grpcPort == httpPort) grpcPort = freePort()
        val store = workdir.resolve("cerbos.sqlite")
        Files.writeString(
            workdir.resolve("config.yaml"),
            """
            |server:
            |  httpListenAddr: "127.0.0.1:$httpPort"
            |  grpcListenAddr: "127.0.0.1:$grpcPort"
            |  adminAPI:
            |    enabled: true
            |    adminCredentials:
            |      username: $CERBOS_ADMIN_USER
            |      passwordHash: $CERBOS_ADMIN_PASSWORD_HASH_B64
            |storage:
            |  driver: sqlite3
            |  sqlite3:
            |    dsn: "file:$store?mode=rwc&_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)&_txlock=immediate"
            |telemetry:
            |  disabled: true
            |""".trimMargin(),
        )
    }

    /** The settings that connect a heimdall-http (or its worker) to this PDP. */
    fun env(): Map<String, String> = mapOf(
        "CERBOS_CHECK_URL" to "$baseUrl/api/check/resources",
        "CERBOS_ADMIN_URL" to "$baseUrl/admin/policy",
        "CERBOS_ADMIN_USER" to CERBOS_ADMIN_USER,
        "CERBOS_ADMIN_PASSWORD" to CERBOS_ADMIN_PASSWORD,
    )

    fun start() {
        val pb = ProcessBuilder("timeout", "--kill-after=5", "900", binary, "server", "--config=${workdir.resolve("config.yaml")}")
        pb.environment().clear()
        pb.environment()["PATH"] = System.getenv("PATH") ?: "/usr/bin:/bin"
        pb.environment()["CERBOS_NO_TELEMETRY"] = "1"
        pb.redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(logFile))
        val p = pb.start()
        process = p
        try {
            waitUntil("Cerbos healthy", Duration.ofSeconds(20)) {
                check(p.isAlive) { "Cerbos exited during start (${p.exitValue()}); log:\n${logFile.readText()}" }
                val r = Http.get("$baseUrl/_cerbos/health")
                if (r.statusCode() == 200 && r.body().contains("SERVING")) true else null
            }
        } catch (e: Throwable) {
            close()
            throw AssertionError("${e.message}; Cerbos log:\n${logFile.readText()}", e)
        }
    }

    override fun close() {
        process?.let { stopProcess(it) }
        process = null
    }
}

/** `heimdall <args>` with exactly [env] (plus PATH and JSON logs); its log (stderr) in a file. */
class HeimdallProcess(binary: String, val args: List<String>, env: Map<String, String>, workdir: Path, name: String) : AutoCloseable {
    private val logFile: File = workdir.resolve("$name.log").toFile()
    val process: Process
    private val lines = LinkedBlockingQueue<String>()
    private val seen = mutableListOf<String>()

    init {
        Files.createDirectories(workdir)
        val pb = ProcessBuilder(listOf(binary) + args)
        pb.environment().clear()
        pb.environment()["PATH"] = System.getenv("PATH") ?: "/usr/bin:/bin"
        pb.environment()["LOG_FORMAT"] = "json"
        pb.environment()["RUST_LOG"] = "info"
        pb.environment().putAll(env)
        pb.redirectError(ProcessBuilder.Redirect.appendTo(logFile)).redirectInput(ProcessBuilder.Redirect.from(File("/dev/null")))
        process = pb.start()
        Thread({
            process.inputStream.bufferedReader().forEachLine { lines.put(it) }
            lines.put(EOF)
        }, "heimdall-$name-stdout").apply { isDaemon = true }.start()
    }

    /** The first stdout line containing [needle]; an AssertionError with the log if none comes. */
    fun waitForLine(needle: String, timeout: Duration = Duration.ofSeconds(60)): String {
        val deadline = System.nanoTime() + timeout.toNanos()
        while (true) {
            val left = deadline - System.nanoTime()
            val line = if (left > 0) lines.poll(left, TimeUnit.NANOSECONDS) else null
            if (line != null && line !== EOF) {
                seen += line
                if (needle in line) return line
                continue
            }
            close()
            throw AssertionError("heimdall $args printed no line with '$needle' (exit ${process.exitValue()}); stdout $seen; log:\n${log()}")
        }
    }

    /** Waits for the process to exit by itself; its exit status. */
    fun waitFor(timeout: Duration = Duration.ofSeconds(60)): Int {
        if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            close()
            throw AssertionError("heimdall $args did not finish in $timeout; log:\n${log()}")
        }
        return process.exitValue()
    }

    fun log(): String = if (logFile.exists()) logFile.readText() else ""

    /** SIGTERM, then SIGKILL after 20 s. */
    override fun close() {
        stopProcess(process, Duration.ofSeconds(20))
    }

    /** SIGKILL at once (a crash). */
    fun kill() {
        process.destroyForcibly()
        process.waitFor(10, TimeUnit.SECONDS)
    }

    private companion object {
        val EOF = String(charArrayOf('\u0000'))
    }
}

/** `heimdall install-policies`: the admin policy pack into [cerbos]. */
fun installPolicies(binary: String, cerbos: Cerbos, workdir: Path) {
    val p = HeimdallProcess(binary, listOf("install-policies"), cerbos.env(), workdir, "install-policies")
    val status = p.waitFor()
    check(status == 0) { "heimdall install-policies failed ($status); log:\n${p.log()}" }
}

/** A small HTTP client (the JDK's). */
object Http {
    val client: HttpClient = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).version(HttpClient.Version.HTTP_1_1).build()

    fun get(url: String, headers: Map<String, String> = emptyMap()): HttpResponse<String> = send("GET", url, null, headers)

    fun send(method: String, url: String, body: String?, headers: Map<String, String> = emptyMap()): HttpResponse<String> {
        val b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30))
        headers.forEach { (k, v) -> b.header(k, v) }
        if (body != null) b.header("Content-Type", "application/json")
        b.method(method, if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofString(body))
        return client.send(b.build(), HttpResponse.BodyHandlers.ofString())
    }
}

private fun json(s: String) = "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""

/** heimdall-http's REST API, as one credential (by default the superadmin's token). */
class Rest(private val base: String, private val token: String) {
    fun call(method: String, path: String, body: String? = null, expect: Int? = null): HttpResponse<String> {
        val r = Http.send(method, base + path, body, mapOf("Authorization" to "Bearer $token"))
        if (expect != null && r.statusCode() != expect) throw AssertionError("$method $path: expected $expect, got ${r.statusCode()}: ${r.body()}")
        return r
    }

    fun group(name: String) { call("POST", "/api/v1/groups", """{"name":${json(name)}}""", 201) }

    fun role(name: String, vararg actions: String) {
        call("POST", "/api/v1/roles", """{"name":${json(name)}}""", 201)
        for (a in actions) call("PUT", "/api/v1/roles/$name/permissions/$a", """{"effect":"allow"}""", 200)
    }

    fun groupRole(group: String, role: String) { call("POST", "/api/v1/groups/$group/roles", """{"role":${json(role)}}""", 201) }

    fun addMember(group: String, subject: String) { call("POST", "/api/v1/groups/$group/members", """{"subject":${json(subject)}}""", 201) }

    fun removeMember(group: String, subject: String) { call("DELETE", "/api/v1/groups/$group/members/$subject", null, 204) }

    /** Creates a mapping; its id. */
    fun mapping(method: String, pattern: String, action: String): Long {
        val r = call("POST", "/api/v1/mappings", """{"method":${json(method)},"path_pattern":${json(pattern)},"action":${json(action)}}""", 201)
        return Regex("\"id\"\\s*:\\s*(\\d+)").find(r.body())?.groupValues?.get(1)?.toLong() ?: error("no id in ${r.body()}")
    }

    /** Creates an API key; its secret. */
    fun apiKey(name: String, scopes: List<String>): String {
        val r = call("POST", "/api/v1/api-keys", """{"name":${json(name)},"scopes":[${scopes.joinToString(",") { json(it) }}]}""", 201)
        return Regex("\"secret\"\\s*:\\s*\"([^\"]+)\"").find(r.body())?.groupValues?.get(1) ?: error("no secret in ${r.body()}")
    }
}

/** A heimdall-http on a fresh SQLite database under [workdir], trusting [idp], with `root` as superadmin; on
 *  [cerbos], also its push worker. */
class Stack(private val binary: String, val idp: Idp, private val workdir: Path, val cerbos: Cerbos? = null) : AutoCloseable {
    /** The database heimdall-http keeps its data in (for an embedded authorizer). */
    val databaseUrl: String = "sqlite://${workdir.resolve("h.db")}"
    private val env: Map<String, String> = buildMap {
        put("DB_DSN", databaseUrl)
        put("HEIMDALL_BOOTSTRAP_SUPERADMINS", SUPERADMIN)
        put("HOST", "127.0.0.1")
        put("PORT", "0")
        put("SYNC_RETRY_INTERVAL_SECONDS", "1")
        putAll(idp.env())
        cerbos?.let { putAll(it.env()) }
    }
    var server: HeimdallProcess
        private set
    var worker: HeimdallProcess? = null
        private set
    var base: String
        private set
    val rootToken: String = idp.token(SUPERADMIN, 3600)
    var rest: Rest
        private set

    init {
        server = HeimdallProcess(binary, listOf("serve"), env, workdir, "serve")
        base = listening(server)
        rest = Rest(base, rootToken)
        if (cerbos != null) worker = HeimdallProcess(binary, listOf("worker"), env, workdir, "worker")
    }

    private fun listening(p: HeimdallProcess): String {
        val line = p.waitForLine("listening on")
        return line.split(" ").first { it.startsWith("http://127.0.0.1:") }.trimEnd('/')
    }

    /** Stops the server and starts it again on the same port and database (what a deploy does). */
    fun restartServer() {
        server.close()
        val port = URI.create(base).port
        server = HeimdallProcess(binary, listOf("serve"), env + ("PORT" to port.toString()), workdir, "serve")
        base = listening(server)
        rest = Rest(base, rootToken)
    }

    fun logs(): String = "--- heimdall serve ---\n${server.log()}" + (worker?.let { "\n--- heimdall worker ---\n${it.log()}" } ?: "")

    override fun close() {
        worker?.close()
        server.close()
    }
}

/** The scenario most tests share: role `jvm:reader` (`course:read`) of group `jvm:readers`, whose member is
 *  alice-<suffix>; mappings `GET /courses/:id` → course:read and `GET /admin/:section` → admin:read (nobody holds
 *  it); an adapter API key with mappings:read and grants:read. */
data class Courses(val alice: String, val bob: String, val group: String, val courseMapping: Long, val adminMapping: Long, val key: String)

fun courses(stack: Stack, suffix: String = UUID.randomUUID().toString().take(10)): Courses {
    val rest = stack.rest
    val alice = "alice-$suffix"
    val bob = "bob-$suffix"
    rest.role("jvm:reader", "course:read")
    rest.group("jvm:readers")
    rest.groupRole("jvm:readers", "jvm:reader")
    rest.addMember("jvm:readers", alice)
    val course = rest.mapping("GET", "/courses/:id", "course:read")
    val admin = rest.mapping("GET", "/admin/:section", "admin:read")
    val key = rest.apiKey("adapter-$suffix", listOf("mappings:read", "grants:read"))
    return Courses(alice, bob, "jvm:readers", course, admin, key)
}
