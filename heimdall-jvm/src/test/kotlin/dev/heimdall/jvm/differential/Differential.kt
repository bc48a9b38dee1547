// What the JVM differential tests share: the route table (as Heimdall mappings, Spring and Ktor routes), the
// raw request targets (thousands, written byte for byte on a socket so no client normalises them), the ledger
// the handlers write to, the world (a real heimdall-http holding the mappings and a role allowing every mapped
// action to the test user) and the check: for every request, either no handler ran (Heimdall refused it, or
// the server or router did), or the handler that ran is the route whose mapping the decision was made on.
// It also holds the deliberately naive stand-in decision the self-checks use to show the check can fail.
package dev.heimdall.jvm.differential

import dev.heimdall.jvm.harness.AUDIENCE
import dev.heimdall.jvm.harness.ISSUER
import dev.heimdall.jvm.harness.Idp
import dev.heimdall.jvm.harness.Stack
import dev.heimdall.jvm.harness.waitUntil
import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.AuthorizerSettings
import dev.heimdall.uniffi.Decision
import dev.heimdall.uniffi.Grant
import dev.heimdall.uniffi.HeimdallException
import dev.heimdall.uniffi.Refusal
import dev.heimdall.uniffi.Resolver
import java.io.ByteArrayOutputStream
import java.io.IOException
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.Socket
import java.nio.file.Path
import java.time.Duration
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong

// ---------------------------------------------------------------------------------------------------------------
// The routes
// ---------------------------------------------------------------------------------------------------------------

/**
 * One endpoint: its Heimdall mapping ([mappingMethod] `ANY` for every method; `null` for a route no mapping
 * covers), the same endpoint as a Spring MVC pattern ([springMethods] empty for every method) and as a Ktor
 * route ([ktorMethod] `null` for every method; [ktorRegex] for a regular-expression route).
 */
data class Route(
    val name: String,
    val mappingMethod: String?,
    val mappingPattern: String?,
    val springPath: String,
    val springMethods: List<String>,
    val ktorPath: String,
    val ktorMethod: String?,
    val ktorRegex: Boolean = false,
)

/** The route of an unmapped request let through (`unmapped = "allow"`): no mapped route's handler may run. */
const val UNMAPPED = "(unmapped)"

// A catch-all in the three spellings: Heimdall's `/v1/**` is one or more segments, while Spring's `/v1/**` and
// Ktor's `/v1/{rest...}` also match `/v1` itself; `/v1/{first}/**` and `/v1/{first}/{rest...}` are exactly
// Heimdall's.
val ROUTES: List<Route> = listOf(
    Route("root", "GET", "/", "/", listOf("GET"), "/", "GET"),
    Route("jobs_purge", "POST", "/v1/jobs:purge", "/v1/jobs:purge", listOf("POST"), "/v1/jobs:purge", "POST"),
    Route("jobs_get", "GET", "/v1/jobs/:id", "/v1/jobs/{id}", listOf("GET"), "/v1/jobs/{id}", "GET"),
    Route("v1_any", "ANY", "/v1/**", "/v1/{first}/**", emptyList(), "/v1/{first}/{rest...}", null),
    Route("users_me", "GET", "/users/@me", "/users/@me", listOf("GET"), "/users/@me", "GET"),
    Route("users_get", "GET", "/users/:name", "/users/{name}", listOf("GET"), "/users/{name}", "GET"),
    Route("files_get", "GET", "/files/:name", "/files/{name}", listOf("GET"), "/files/{name}", "GET"),
    // A non-ASCII literal: Heimdall stores it as /files/caf%C3%A9, both routers match it decoded.
    Route("files_cafe", "GET", "/files/café", "/files/café", listOf("GET"), "/files/café", "GET"),
    Route("admin_users", "POST", "/admin/users", "/admin/users", listOf("POST"), "/admin/users", "POST"),
    // A regular-expression mapping beside regular-expression routes.
    Route("reports_get", "GET", "~/reports/[0-9]+", "/reports/{n:[0-9]+}", listOf("GET"), "/reports/(?<n>[0-9]+)", "GET", ktorRegex = true),
    // No mapping covers it: refused with unmapped = "deny", run with an unmapped grant with "allow".
    Route("public_health", null, null, "/public/health", listOf("GET"), "/public/health", "GET"),
)

/** Methods the requests are sent with, in every case: core refuses a method that is not an upper-case token. */
val METHODS: List<String> = listOf(
    "GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "M-SEARCH",
    "get", "Get", "gET", "post", "Post", "head", "hEAD", "delete", "options", "propfind",
)

// ---------------------------------------------------------------------------------------------------------------
// The request targets
// ---------------------------------------------------------------------------------------------------------------

/** Canonical targets of every route (and a few near them). */
val BASES: List<String> = listOf(
    "/v1/jobs/7", "/v1/jobs:purge", "/v1/x/y", "/v1/x", "/users/@me", "/users/alice", "/files/a", "/files/caf%C3%A9",
    "/admin/users", "/reports/42", "/public/health", "/",
)

private fun latin1(s: String): ByteArray = s.toByteArray(Charsets.ISO_8859_1)

/**
 * Raw request targets: every base as is; each of its characters percent-encoded (upper- and lower-case hex);
 * every byte 0x00-0xFF, percent-encoded (both hex cases) and raw, at the start, in the middle and at the end of
 * the last segment of some routes, and every printable ASCII byte encoded as a segment of its own; and the
 * known confusions of servlet containers and routers: `;` matrix parameters and `;jsessionid`, `..;`, dot
 * segments raw and encoded, `//`, trailing slashes, `%2F`, `%5C`, double encoding, non-ASCII raw and encoded
 * (NFC, NFD, full-width), case, `#`, absolute-form and over-long targets.
 */
fun requestTargets(): List<ByteArray> {
    val targets = LinkedHashSet<String>() // Latin-1 strings: one char per byte, order kept, no duplicates.
    fun add(t: String) { targets += t }
    fun addBytes(t: ByteArray) { targets += String(t, Charsets.ISO_8859_1) }

    for (base in BASES) {
        add(base)
        add("$base?q=/../admin")
        for (i in 1 until base.length) {
            val c = base[i].code
            add(base.substring(0, i) + "%%%02X".format(c) + base.substring(i + 1))
            add(base.substring(0, i) + "%%%02x".format(c) + base.substring(i + 1))
        }
    }
    for (base in listOf("/users/@me", "/v1/jobs:purge", "/files/a")) {
        val cut = base.lastIndexOf('/') + 1
        val last = base.substring(cut)
        val spots = listOf(
            base.substring(0, cut) to last,
            base.substring(0, cut) + last.substring(0, last.length / 2) to last.substring(last.length / 2),
            base to "",
        )
        for (b in 0..255) {
            for ((before, after) in spots) {
                add(before + "%%%02X".format(b) + after)
                if ("%02X".format(b) != "%02x".format(b)) add(before + "%%%02x".format(b) + after)
                // A raw CR, LF or space would end the request line rather than sit in it.
                if (b != 0x0A && b != 0x0D && b != 0x20) addBytes(latin1(before) + byteArrayOf(b.toByte()) + latin1(after))
            }
        }
        for (b in 0x20 until 0x7F) add(base + "/%%%02X".format(b))
    }
    val specials = listOf(
        // Matrix parameters: Tomcat drops them from the servlet path, Spring from each segment it matches.
        "/v1/jobs/7;x=1", "/v1/jobs;x=1/7", "/v1;x=1/jobs/7", "/admin;/users", "/admin;x=1/users", "/admin/users;",
        "/admin/users;jsessionid=ABC", "/admin/users;JSESSIONID=ABC", "/users/@me;jsessionid=1", "/;/admin/users",
        "/users/a;b", "/users/;", "/users/;x", "/files/;a", "/reports/42;x", "/reports;/42", "/public;/health",
        "/public/health;", "/v1/jobs:purge;", "/v1/jobs:purge;x", "/v1/%3B/x", "/admin%3Busers", "/admin/users%3B",
        "/admin/users%3b", "/v1/jobs;/7", "/;", "/;x=1",
        // Dot segments, plain and hidden: `..;` is a segment `..` to Tomcat once it drops `;`.
        "/v1/../admin/users", "/v1/x/../../admin/users", "/v1/./jobs/7", "/./admin/users", "/admin/./users",
        "/v1/..;/admin/users", "/v1/x/..;/..;/admin/users", "/v1/x/;/../../admin/users", "/admin/users/.;",
        "/v1/x/.;/y", "/v1/%2e%2e/admin/users", "/v1/%2E%2E/admin/users", "/v1/.%2e/admin/users", "/v1/%2e./admin/users",
        "/v1/%2e/jobs/7", "/admin/users/.", "/admin/users/..", "/admin/users/../users", "/v1/x/...", "/v1/x/.../y",
        "/admin/users.", "/admin/users.json", "/users/@me.json", "/reports/42.0", "/v1/jobs/7%2F..%2F..%2Fadmin",
        "/v1/%2E%2E%2Fadmin/users", "/v1/..%2Fadmin/users", "/v1/..%5Cadmin/users", "/v1\\..\\admin/users",
        "/v1/x\\..\\..\\admin/users", "/v1/x/%2e%2e;/%2e%2e;/admin/users", "/..", "/.", "/../admin/users",
        // Slashes and trailing slashes.
        "//admin/users", "/admin//users", "///admin/users", "/admin/users/", "/admin/users//", "/v1/jobs/7/", "/v1//jobs/7",
        "/v1/jobs:purge/", "/users/@me/", "/reports/42/", "/public/health/", "/files/caf%C3%A9/", "//", "/v1//", "/v1/",
        "/v1", "/users", "/users/", "/files/", "/reports/", "/reports", "/v1/jobs%2Fpurge", "/v1/jobs%2f7",
        "/admin%2Fusers", "/%2Fadmin/users", "%2Fadmin/users", "/v1/x%2F", "/v1/%2F",
        // Regular-expression routes.
        "/reports/x", "/reports/-1", "/reports/4%202", "/reports/%34%32", "/reports/%EF%BC%94%EF%BC%92",
        "/reports/42%0A", "/reports/42%00", "/reports/00042", "/reports/4.2",
        // Escapes of characters that may stand raw, double encoding, bad escapes.
        "/v1/jobs%3Apurge", "/v1/jobs%3apurge", "/users/%40me", "/users/%40%6De", "/v1/jobs%253Apurge", "/users/%2540me",
        "/admin/users%23", "/admin/users%3F", "/admin/users%3Fx", "/users/a+b", "/users/a%2Bb", "/users/a%20b",
        "/users/@me%20", "/users/%C3", "/users/%C0%AF", "/users/%E2%80%AE", "/files/a%00", "/files/%", "/files/%zz",
        "/files/%5", "/v1/jobs%3A", "/v1/%3A", "/users/%21%24%26%27%28%29%2A%2B%2C%3B%3D", "/users/!\$&'()*+,=",
        "/users/a%5Cb", "/users/a\\b", "/%61dmin/users", "/admin/%75sers", "/%2Fv1/jobs/7", "/v1/jobs/%37",
        // Non-ASCII: canonical (upper-case escapes of UTF-8) and every other spelling.
        "/files/caf%c3%a9", "/files/caf%C3%a9", "/files/cafe%CC%81", "/files/CAF%C3%89", "/files/caf%C3%A9%20",
        "/files/caf%C3%A9;x", "/files/caf%C3", "/files/caf%E9", "/files/caf%C3%A9%00", "/files/%EF%BC%8Fadmin",
        "/users/%C3%A9", "/users/%c3%a9", "/files/caf%25C3%25A9",
        // Case.
        "/ADMIN/users", "/Admin/Users", "/admin/USERS", "/V1/jobs/7", "/v1/JOBS:purge", "/users/@ME", "/USERS/@me",
        "/FILES/caf%C3%A9", "/Public/health",
        // Fragments and queries.
        "/users/@me#x", "/admin/users#", "/admin/users#/../x", "/v1/jobs/7#", "/v1/x/y#z", "/users/alice?x#y",
        "/users/@me#/../alice", "/admin/users?", "/admin/users?x=1", "/admin/users?;", "/admin/users??",
        "/users/@me?/../admin", "/v1/jobs:purge?x=%2F", "/v1/jobs%3Apurge?x=1", "/users/%40me?q=1", "/?", "/#",
        // Other forms of the request target.
        "http://127.0.0.1/admin/users", "http://127.0.0.1:1/users/@me", "HTTP://127.0.0.1/users/@me",
        "http://127.0.0.1/v1/../admin/users", "*", "users/@me", "", "?x", "#x",
    )
    specials.forEach(::add)
    addBytes("/files/café".toByteArray(Charsets.UTF_8))
    addBytes("/files/CAFÉ".toByteArray(Charsets.UTF_8))
    addBytes("/files/cafe\u0301".toByteArray(Charsets.UTF_8))
    addBytes(latin1("/files/caf") + byteArrayOf(0xE9.toByte()))
    addBytes(latin1("/users/") + byteArrayOf(0xFF.toByte()))
    addBytes(latin1("/v1/jobs") + byteArrayOf(0xEF.toByte(), 0xBC.toByte(), 0x9A.toByte()) + latin1("purge")) // full-width ':'
    addBytes(latin1("/admin") + byteArrayOf(0xEF.toByte(), 0xBC.toByte(), 0x8F.toByte()) + latin1("users")) // full-width '/'
    add("/v1/" + "a".repeat(3000))
    add("/v1/" + "a/".repeat(1200) + "b")
    add("/users/" + "%C3%A9".repeat(500))
    add("/users/" + "x".repeat(2040))
    return targets.map(::latin1)
}

/** Targets also sent with every method in [METHODS]. */
val EVERY_METHOD_TARGETS: List<String> = BASES + listOf(
    "/v1/jobs%3Apurge", "/users/%40me", "/v1/jobs%3apurge", "/users/%40%6De", "/users/@me#x", "/v1/jobs/7;x=1",
    "/v1/..;/admin/users", "/v1/../admin/users", "/admin;/users", "/admin/users/",
)

/** Every request one run sends: each target once (methods in turn), and [EVERY_METHOD_TARGETS] with each method. */
fun requests(targets: List<ByteArray>): List<Pair<String, ByteArray>> {
    check(targets.size >= 2000) { "only ${targets.size} targets" }
    return targets.mapIndexed { i, t -> METHODS[i % METHODS.size] to t } +
        EVERY_METHOD_TARGETS.flatMap { t -> METHODS.map { m -> m to latin1(t) } }
}

/** A target as printable text: bytes outside printable ASCII as `\xNN`. */
fun show(target: ByteArray): String = buildString {
    for (b in target) {
        val c = b.toInt() and 0xFF
        if (c in 0x21..0x7E) append(c.toChar()) else append("\\x%02X".format(c))
    }
    if (length > 120) { setLength(117); append("...") }
}

// ---------------------------------------------------------------------------------------------------------------
// A client that writes the request line byte for byte
// ---------------------------------------------------------------------------------------------------------------

/** An answer: [status] 0 when the server closed the connection without one. */
class Answer(val status: Int, val headers: Map<String, String>, val body: String)

/** Writes one request with exactly this method and request target (and the probe id handlers record), reads
 *  the whole answer (the server closes the connection after it). */
fun sendRaw(port: Int, method: String, target: ByteArray, token: String, probe: String): Answer {
    val request = ByteArrayOutputStream()
    request.write(latin1("$method "))
    request.write(target)
    request.write(latin1(" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer $token\r\nX-Probe: $probe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
    val raw = try {
        Socket().use { s ->
            s.connect(InetSocketAddress(InetAddress.getLoopbackAddress(), port), 5_000)
            s.soTimeout = 15_000
            s.getOutputStream().write(request.toByteArray())
            s.getOutputStream().flush()
            val received = ByteArrayOutputStream()
            try {
                s.getInputStream().transferTo(received)
            } catch (e: IOException) {
                // A reset after the answer (the server closed without reading everything): keep what came.
                if (received.size() == 0) throw e
            }
            received.toByteArray()
        }
    } catch (e: IOException) {
        return Answer(0, emptyMap(), "no answer: $e")
    }
    val text = String(raw, Charsets.ISO_8859_1)
    val headEnd = text.indexOf("\r\n\r\n").let { if (it < 0) text.length else it }
    val lines = text.substring(0, headEnd).split("\r\n")
    val status = lines.first().split(" ").getOrNull(1)?.toIntOrNull() ?: return Answer(0, emptyMap(), "unparsable answer: ${text.take(200)}")
    val headers = lines.drop(1).mapNotNull { line ->
        val colon = line.indexOf(':')
        if (colon < 0) null else line.substring(0, colon).trim().lowercase() to line.substring(colon + 1).trim()
    }.toMap()
    return Answer(status, headers, text.substring(minOf(text.length, headEnd + 4)))
}

// ---------------------------------------------------------------------------------------------------------------
// What the handlers record
// ---------------------------------------------------------------------------------------------------------------

/** A handler run: which route, and the grant the request carried (`null`: the filter/plugin did not see it). */
class HandlerRun(val route: String, val grant: Grant?, val routedMethod: String, val routedPath: String)

/**
 * What every handler writes, by the request's probe id (the `X-Probe` header): the truth about which handler
 * ran, kept on the server's side, so a handler that ran is seen even if its answer is lost.
 */
class Ledger {
    private val runs = ConcurrentHashMap<String, MutableList<HandlerRun>>()

    fun record(probe: String?, run: HandlerRun) {
        runs.computeIfAbsent(probe ?: "(no probe)") { java.util.Collections.synchronizedList(mutableListOf()) }.add(run)
    }

    fun runsOf(probe: String): List<HandlerRun> = runs[probe]?.toList().orEmpty()

    /** Handler runs whose request carried no probe id (none should). */
    fun unprobed(): List<HandlerRun> = runsOf("(no probe)")
}

/** The headers every handler answers with besides its body (its route name): which mapping the grant names. */
fun markers(route: String, grant: Grant?): Map<String, String> =
    mapOf("X-Route" to route, "X-Mapping" to (grant?.let { it.mappingId?.toString() ?: "none" } ?: "no-grant"))

// ---------------------------------------------------------------------------------------------------------------
// The world: heimdall-http with the mappings, and authorizers following it
// ---------------------------------------------------------------------------------------------------------------

const val TEST_USER = "diff-alice"

/** A heimdall-http holding [ROUTES]' mappings (action `route:<name>`), a role allowing all of them to
 *  [TEST_USER], and an API key with mappings:read and grants:read. */
class World(heimdallBin: String, private val workdir: Path) : AutoCloseable {
    val idp = Idp()
    val stack = Stack(heimdallBin, idp, workdir.resolve("stack"))
    val routeOfMapping: Map<Long, String>
    val apiKey: String
    val token: String = idp.token(TEST_USER, 3600)
    private val authorizers = mutableListOf<Authorizer>()

    init {
        try {
            val rest = stack.rest
            val mapped = ROUTES.filter { it.mappingPattern != null }
            routeOfMapping = mapped.associate { rest.mapping(it.mappingMethod!!, it.mappingPattern!!, "route:${it.name}") to it.name }
            rest.role("differential", *mapped.map { "route:${it.name}" }.toTypedArray())
            rest.group("differential")
            rest.groupRole("differential", "differential")
            rest.addMember("differential", TEST_USER)
            apiKey = rest.apiKey("differential", listOf("mappings:read", "grants:read"))
        } catch (e: Throwable) {
            close()
            throw e
        }
    }

    /** An authorizer following heimdall-http, deciding locally, ready (mappings and the user's grants loaded). */
    fun authorizer(unmapped: String): Authorizer {
        val a = Authorizer(
            AuthorizerSettings(
                jwksUrl = idp.jwksUrl, heimdallUrl = stack.base, credential = apiKey, issuer = ISSUER, audience = AUDIENCE,
                unmapped = unmapped, pollInterval = 0.5, decisionTtl = 600.0,
            ),
        )
        authorizers += a
        check(a.waitReady(20.0)) { "the authorizer loaded no snapshot" }
        val grant = waitUntil("the test user's grants", Duration.ofSeconds(15)) {
            (a.authorize("POST", "/admin/users", token) as? Decision.Allowed)?.grant
        }
        check(routeOfMapping[grant.mappingId] == "admin_users") { "POST /admin/users decided on $grant" }
        return a
    }

    /** The same mappings, read from heimdall-http's export, for the naive stand-in. */
    fun resolver(): Resolver = Resolver.fromExport(stack.base, apiKey, 10.0)

    override fun close() {
        authorizers.forEach { it.close() }
        stack.close()
        idp.close()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The naive stand-in (test-only)
// ---------------------------------------------------------------------------------------------------------------

/**
 * A DELIBERATELY NAIVE stand-in for Heimdall's filter/plugin decision, used only to show that the check can
 * fail: it resolves the path the framework has already decoded and normalised (a servlet path, a decoded Ktor
 * path) instead of the raw request target, checks no token, and allows whatever resolves. Never use it for
 * anything else.
 */
class NaiveStandInDecision(private val resolver: Resolver, private val unmapped: String) {
    fun decide(method: String, decodedPath: String): Decision {
        val match = try {
            resolver.resolve(method, decodedPath)
        } catch (e: HeimdallException) {
            return Decision.Refused(Refusal(400, "invalid_input", e.message ?: "invalid input"))
        }
        return when {
            match != null -> Decision.Allowed(Grant(TEST_USER, match.action, match.mappingId, match.params))
            unmapped == "allow" -> Decision.Allowed(Grant(TEST_USER, null, null, emptyMap()))
            else -> Decision.Refused(Refusal(403, "forbidden", "no mapping"))
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------------------------

/** The outcome of one run: per request what ran (`null`: no handler), the mismatches (every one fails the run;
 *  [wrongHandlers] are those where a handler ran on another mapping's decision), the counts. */
class Report(
    val app: String,
    val targets: Int,
    val requests: Int,
    val refusedByHeimdall: Int,
    val refusedByServer: Int,
    val refusedHeadNoBody: Int,
    val routed: Int,
    val mismatches: List<String>,
    val wrongHandlers: List<String>,
    val outcomes: Map<String, Int>,
    val examples: Map<String, String>,
    val ran: Map<Pair<String, String>, String?>,
    val seconds: Double,
) {
    fun summary(): String =
        "jvm_differential: app=$app targets=$targets requests=$requests refused=${refusedByHeimdall + refusedByServer + refusedHeadNoBody} " +
            "(heimdall=$refusedByHeimdall server=$refusedByServer head_no_body=$refusedHeadNoBody) routed=$routed mismatches=${mismatches.size} seconds=${"%.1f".format(seconds)}"

    /** The route that ran for [method] [target], `null` when none did. */
    fun ranFor(method: String, target: String): String? = ran.getValue(method to target)
}

private val heimdallRefusal = Regex("""^\{"error":\{"code":"([a-z_]+)"""")

/** The route a mapping-id marker names: [UNMAPPED] for an unmapped grant, a description for anything else. */
private fun decidedOn(grant: Grant?, routeOfMapping: Map<Long, String>): String = when {
    grant == null -> "(no grant: the filter/plugin did not see the request)"
    grant.mappingId == null -> UNMAPPED
    else -> routeOfMapping[grant.mappingId] ?: "(mapping ${grant.mappingId})"
}

/** The mapping a route's handler must have been authorised on: its own, or none for an unmapped route. */
private fun expectedDecision(route: String): String =
    if (ROUTES.firstOrNull { it.name == route }?.mappingPattern == null) UNMAPPED else route

/**
 * Sends every request of [requests] to 127.0.0.1:[port] (4 at a time, one connection each) and checks every
 * answer against [ledger]: either no handler ran (Heimdall's JSON refusal, or the server's or router's own
 * answer), or exactly one ran and it is the route of the mapping its grant names. A 5xx is a mismatch too.
 */
fun drive(app: String, port: Int, ledger: Ledger, world: World): Report {
    val targetList = requestTargets()
    val all = requests(targetList)
    val targets = targetList.size
    val started = System.nanoTime()
    val pool = Executors.newFixedThreadPool(4) { r -> Thread(r, "differential-client").apply { isDaemon = true } }
    val probeIds = AtomicLong()
    val answers = try {
        all.map { (method, target) ->
            pool.submit<Triple<String, ByteArray, Pair<String, Answer>>> {
                val probe = "p${probeIds.incrementAndGet()}"
                Triple(method, target, probe to sendRaw(port, method, target, world.token, probe))
            }
        }.map { it.get(60, TimeUnit.SECONDS) }
    } finally {
        pool.shutdownNow()
    }
    val seconds = (System.nanoTime() - started) / 1e9

    val outcomes = sortedMapOf<String, Int>()
    val examples = mutableMapOf<String, String>()
    fun count(outcome: String, method: String, target: ByteArray) {
        outcomes.merge(outcome, 1, Int::plus)
        examples.putIfAbsent(outcome, "$method ${show(target)}")
    }
    val mismatches = mutableListOf<String>()
    val wrongHandlers = mutableListOf<String>()
    val ran = mutableMapOf<Pair<String, String>, String?>()
    var byHeimdall = 0
    var byServer = 0
    var headNoBody = 0
    var routed = 0
    for ((method, target, probeAndAnswer) in answers) {
        val (probe, answer) = probeAndAnswer
        val key = method to String(target, Charsets.ISO_8859_1)
        val runs = ledger.runsOf(probe)
        if (runs.isEmpty()) {
            ran[key] = null
            val code = heimdallRefusal.find(answer.body)?.groupValues?.get(1)
            when {
                code != null && answer.headers["content-type"]?.startsWith("application/json") == true -> {
                    byHeimdall++
                    count("no handler: heimdall ${answer.status} $code", method, target)
                }
                // An answer to HEAD has no body to tell Heimdall's refusal from the server's.
                method.equals("HEAD", ignoreCase = true) && answer.status != 0 -> {
                    headNoBody++
                    count("no handler: ${answer.status} to HEAD (no body)", method, target)
                }
                else -> {
                    byServer++
                    count("no handler: server ${answer.status}", method, target)
                }
            }
            if (answer.status >= 500) mismatches += "$method ${show(target)}: answered ${answer.status} ${answer.body.take(200)}"
            if (answer.headers.containsKey("x-route")) mismatches += "$method ${show(target)}: answered by ${answer.headers["x-route"]}, which the ledger did not see"
            continue
        }
        routed++
        val run = runs.first()
        ran[key] = run.route
        count("handler ran: ${run.route}", method, target)
        if (runs.size > 1) mismatches += "$method ${show(target)}: ${runs.size} handlers ran (${runs.joinToString { it.route }})"
        val decided = decidedOn(run.grant, world.routeOfMapping)
        if (decided != expectedDecision(run.route)) {
            val wrong = "$method ${show(target)}: authorised on $decided, but $app ran ${run.route} " +
                "(routed ${run.routedMethod} ${run.routedPath})"
            mismatches += wrong
            wrongHandlers += wrong
        }
    }
    ledger.unprobed().forEach { mismatches += "a handler ran for a request without a probe id: ${it.route}" }
    return Report(app, targets, all.size, byHeimdall, byServer, headNoBody, routed, mismatches, wrongHandlers, outcomes, examples, ran, seconds)
}

/** Prints the summary line and the outcome counts. */
fun Report.print() {
    println(summary())
    outcomes.forEach { (what, n) -> println("  %6d  %-40s e.g. %s".format(n, what, examples[what])) }
    if (mismatches.isNotEmpty()) {
        println("  mismatches (first 20 of ${mismatches.size}):")
        mismatches.take(20).forEach { println("    $it") }
    }
}

/**
 * The check is not vacuous: canonical requests reach their handlers, and the known confusions reach none.
 * [headRunsGetHandlers]: whether the framework serves HEAD with GET handlers (Spring does; Ktor only with its
 * AutoHeadResponse plugin).
 */
fun assertCanonicalRouting(report: Report, unmapped: String, headRunsGetHandlers: Boolean) {
    val expected = listOf(
        Triple("GET", "/", "root"),
        Triple("GET", "/v1/jobs/7", "jobs_get"),
        Triple("POST", "/v1/jobs:purge", "jobs_purge"),
        // A path whose own route takes another method goes to the catch-all, in Heimdall as in both routers.
        Triple("GET", "/v1/jobs:purge", "v1_any"),
        Triple("POST", "/v1/jobs/7", "v1_any"),
        Triple("GET", "/v1/x", "v1_any"),
        Triple("PROPFIND", "/v1/x/y", "v1_any"),
        Triple("DELETE", "/v1/x/y", "v1_any"),
        Triple("GET", "/users/@me", "users_me"),
        Triple("GET", "/users/alice", "users_get"),
        Triple("GET", "/files/a", "files_get"),
        Triple("GET", "/files/caf%C3%A9", "files_cafe"),
        Triple("POST", "/admin/users", "admin_users"),
        Triple("GET", "/reports/42", "reports_get"),
        Triple("GET", "/public/health", if (unmapped == "allow") "public_health" else null),
        Triple("HEAD", "/users/@me", if (headRunsGetHandlers) "users_me" else null),
        // Refused: needless escapes, lower-case methods, matrix parameters, dot segments, trailing slashes.
        Triple("POST", "/v1/jobs%3Apurge", null),
        Triple("GET", "/users/%40me", null),
        Triple("get", "/users/@me", null),
        Triple("Get", "/users/alice", null),
        Triple("post", "/v1/jobs:purge", null),
        Triple("get", "/v1/x/y", null),
        Triple("GET", "/v1/jobs/7;x=1", null),
        Triple("POST", "/admin;/users", null),
        Triple("POST", "/v1/../admin/users", null),
        Triple("POST", "/v1/..;/admin/users", null),
        Triple("POST", "/admin/users/", null),
    )
    val wrong = expected.filter { (method, target, route) -> report.ranFor(method, target) != route }
        .map { (method, target, route) -> "$method $target: expected ${route ?: "no handler"}, ran ${report.ranFor(method, target) ?: "no handler"}" }
    if (wrong.isNotEmpty()) throw AssertionError("${report.app}: unexpected routing of canonical requests or known confusions:\n" + wrong.joinToString("\n"))
    if (report.routed < 100) throw AssertionError("${report.app}: only ${report.routed} requests reached a handler")
}
