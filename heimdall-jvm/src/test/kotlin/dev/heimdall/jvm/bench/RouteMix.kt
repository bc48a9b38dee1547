// The resolve benchmark's fixtures, a mirror of benches/src/lib.rs: the same templates (GitHub's REST API, repeated
// under namespaces /api/s<k>), one mapping in twenty a regular expression (at most 200), the same xorshift
// generator and seed, so the JVM and the Rust benchmark resolve the same mappings and the same 512 requests
// (about 75 % route hits, 5 % regex hits, 20 % misses; one in 16 with a query string).
package dev.heimdall.jvm.bench

import dev.heimdall.uniffi.Mapping

object RouteMix {
    /** Requests in the fixed mix. */
    const val REQUESTS: Int = 512

    /** One mapping in this many is a regular expression, up to [REGEX_CAP]. */
    const val REGEX_EVERY: Int = 20

    /** Most regular expressions in a route set (a snapshot holds at most 256). */
    const val REGEX_CAP: Int = 200

    val TEMPLATES: List<Pair<String, String>> = listOf(
        "GET" to "/user",
        "PATCH" to "/user",
        "GET" to "/user/repos",
        "POST" to "/user/repos",
        "GET" to "/user/orgs",
        "GET" to "/user/keys",
        "GET" to "/user/keys/:key_id",
        "DELETE" to "/user/keys/:key_id",
        "GET" to "/users/:username",
        "GET" to "/users/:username/repos",
        "GET" to "/users/:username/gists",
        "GET" to "/users/:username/followers",
        "GET" to "/users/:username/following/:target",
        "GET" to "/orgs/:org",
        "PATCH" to "/orgs/:org",
        "GET" to "/orgs/:org/repos",
        "POST" to "/orgs/:org/repos",
        "GET" to "/orgs/:org/members",
        "GET" to "/orgs/:org/members/:username",
        "DELETE" to "/orgs/:org/members/:username",
        "GET" to "/orgs/:org/teams",
        "GET" to "/orgs/:org/teams/:team_slug",
        "PUT" to "/orgs/:org/teams/:team_slug/repos/:owner/:repo",
        "GET" to "/orgs/:org/hooks/:hook_id",
        "ANY" to "/orgs/:org/settings/**",
        "GET" to "/repos/:owner/:repo",
        "PATCH" to "/repos/:owner/:repo",
        "DELETE" to "/repos/:owner/:repo",
        "GET" to "/repos/:owner/:repo/issues",
        "POST" to "/repos/:owner/:repo/issues",
        "GET" to "/repos/:owner/:repo/issues/:number",
        "PATCH" to "/repos/:owner/:repo/issues/:number",
        "GET" to "/repos/:owner/:repo/issues/:number/comments",
        "POST" to "/repos/:owner/:repo/issues/:number/comments",
        "PUT" to "/repos/:owner/:repo/issues/:number/lock",
        "DELETE" to "/repos/:owner/:repo/issues/:number/lock",
        "GET" to "/repos/:owner/:repo/issues/:number/events",
        "GET" to "/repos/:owner/:repo/issues/:number/labels",
        "DELETE" to "/repos/:owner/:repo/issues/:number/labels/:name",
        "GET" to "/repos/:owner/:repo/issues/comments/:comment_id",
        "GET" to "/repos/:owner/:repo/pulls",
        "POST" to "/repos/:owner/:repo/pulls",
        "GET" to "/repos/:owner/:repo/pulls/:number",
        "PATCH" to "/repos/:owner/:repo/pulls/:number",
        "GET" to "/repos/:owner/:repo/pulls/:number/files",
        "GET" to "/repos/:owner/:repo/pulls/:number/commits",
        "PUT" to "/repos/:owner/:repo/pulls/:number/merge",
        "GET" to "/repos/:owner/:repo/pulls/:number/reviews",
        "POST" to "/repos/:owner/:repo/pulls/:number/reviews",
        "GET" to "/repos/:owner/:repo/pulls/:number/reviews/:review_id",
        "GET" to "/repos/:owner/:repo/commits",
        "GET" to "/repos/:owner/:repo/commits/:ref",
        "GET" to "/repos/:owner/:repo/commits/:ref/status",
        "GET" to "/repos/:owner/:repo/branches",
        "GET" to "/repos/:owner/:repo/branches/:branch",
        "PUT" to "/repos/:owner/:repo/branches/:branch/protection",
        "GET" to "/repos/:owner/:repo/contents/**",
        "PUT" to "/repos/:owner/:repo/contents/**",
        "GET" to "/repos/:owner/:repo/releases",
        "GET" to "/repos/:owner/:repo/releases/latest",
        "GET" to "/repos/:owner/:repo/releases/:release_id",
        "GET" to "/repos/:owner/:repo/releases/:release_id/assets",
        "GET" to "/repos/:owner/:repo/actions/runs",
        "GET" to "/repos/:owner/:repo/actions/runs/:run_id",
        "POST" to "/repos/:owner/:repo/actions/runs/:run_id/cancel",
        "GET" to "/repos/:owner/:repo/actions/runs/:run_id/logs",
        "GET" to "/repos/:owner/:repo/hooks",
        "GET" to "/repos/:owner/:repo/hooks/:hook_id",
        "GET" to "/repos/:owner/:repo/collaborators/:username",
        "PUT" to "/repos/:owner/:repo/collaborators/:username",
        "GET" to "/repos/:owner/:repo/git/refs/**",
        "GET" to "/repos/:owner/:repo/git/trees/:tree_sha",
        "GET" to "/repos/:owner/:repo/stats/contributors",
        "ANY" to "/repos/:owner/:repo/admin/**",
        "GET" to "/gists",
        "POST" to "/gists",
        "GET" to "/gists/:gist_id",
        "PATCH" to "/gists/:gist_id",
        "GET" to "/gists/:gist_id/comments",
        "GET" to "/search/repositories",
        "GET" to "/search/issues",
        "GET" to "/notifications",
        "GET" to "/notifications/threads/:thread_id",
        "GET" to "/teams/:team_id/members",
        "GET" to "/rate_limit",
        "GET" to "/meta",
    )

    private val NAMES = listOf("octocat", "hello-world", "rust-lang", "linux", "heimdall", "main", "v1.2.3")

    /** Whether a parameter's values are numbers (its regex uses `[0-9]+`). */
    fun numeric(name: String): Boolean = name == "number" || name.endsWith("_id")

    /** The Rust fixture's xorshift generator (u64 arithmetic on a Long: the same bits). */
    class Rng(private var state: Long) {
        fun nextU64(): Long {
            state = state xor (state shl 13)
            state = state xor (state ushr 7)
            state = state xor (state shl 17)
            return state
        }

        /** A number below [n]. */
        fun below(n: Int): Int = java.lang.Long.remainderUnsigned(nextU64(), n.toLong()).toInt()
    }

    /** One generated mapping: its method, its route, and its pattern as stored (the route, or a `~` regex). */
    data class Route(val method: String, val route: String, val pattern: String) {
        val isRegex: Boolean get() = pattern.startsWith("~")
    }

    /** One request of the mix: a method and a raw target (path and maybe a query). */
    data class Request(val method: String, val target: String)

    /** [n] mappings: the templates under namespaces `/api/s<k>`, one in twenty as a regex (at most [REGEX_CAP]). */
    fun routes(n: Int): List<Route> = (0 until n).map { i ->
        val (method, template) = TEMPLATES[i % TEMPLATES.size]
        val route = "/api/s${i / TEMPLATES.size}$template"
        val pattern = if (i % REGEX_EVERY == REGEX_EVERY / 2 && i / REGEX_EVERY < REGEX_CAP) {
            val re = StringBuilder("~")
            for (seg in route.substring(1).split('/')) {
                re.append('/')
                when {
                    seg.startsWith(":") -> re.append(if (numeric(seg.substring(1))) "[0-9]+" else "[^/]+")
                    seg == "**" -> {
                        re.setLength(re.length - 1) // the slash: `(/.*)?` brings its own
                        re.append("(/.*)?")
                    }
                    else -> re.append(escapeRegex(seg))
                }
            }
            re.toString()
        } else {
            route
        }
        Route(method, route, pattern)
    }

    /** The mappings of [routes] as Heimdall takes them: ids from 1, 500 distinct actions. */
    fun mappings(routes: List<Route>): List<Mapping> = routes.mapIndexed { i, r ->
        Mapping(id = i + 1L, method = r.method, pathPattern = r.pattern, action = "api:action${i % 500}")
    }

    /** A concrete path for a route pattern. */
    fun instantiate(route: String, rng: Rng): String {
        val path = StringBuilder()
        for (seg in route.substring(1).split('/')) {
            path.append('/')
            when {
                seg.startsWith(":") && numeric(seg.substring(1)) ->
                    path.append(java.lang.Long.remainderUnsigned(rng.nextU64(), 100_000L))
                seg.startsWith(":") -> path.append(NAMES[rng.below(NAMES.size)])
                seg == "**" -> path.append("src/lib.rs")
                else -> path.append(seg)
            }
        }
        return path.toString()
    }

    /** The fixed mix of [REQUESTS] requests (the Rust fixture's `requests`, draw for draw). */
    fun requests(routes: List<Route>): List<Request> {
        val rng = Rng(0x9e3779b97f4a7c15uL.toLong())
        val plain = routes.filter { !it.isRegex }
        val regexes = routes.filter { it.isRegex }
        return (0 until REQUESTS).map { i ->
            val roll = rng.below(100)
            var (method, path) = when {
                roll < 75 || regexes.isEmpty() -> {
                    val r = plain[rng.below(plain.size)]
                    (if (r.method == "ANY") "POST" else r.method) to instantiate(r.route, rng)
                }
                roll < 80 -> {
                    val r = regexes[rng.below(regexes.size)]
                    (if (r.method == "ANY") "GET" else r.method) to instantiate(r.route, rng)
                }
                roll < 90 -> "GET" to instantiate(plain[rng.below(plain.size)].route, rng) + "/no-such-thing"
                roll < 95 -> "TRACE" to instantiate(plain[rng.below(plain.size)].route, rng)
                else -> "GET" to "/api/s${1_000_000 + i}/repos/a/b"
            }
            if (i % 16 == 0) path += "?per_page=100&page=2"
            Request(method, path)
        }
    }

    /** The `regex` crate's `escape`: a backslash before each of its meta characters. */
    fun escapeRegex(s: String): String = buildString {
        for (c in s) {
            if (c in "\\.+*?()|[]{}^$#&-~") append('\\')
            append(c)
        }
    }
}
