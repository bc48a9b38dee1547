// The baseline of the resolve benchmark: the spec's design in plain Kotlin. Every mapping is compiled to one
// java.util.regex.Pattern (a route pattern's `:name` becomes a `([^/]+)` group, `*` `[^/]+`, `**` `(/.+)`, literals
// quoted; a `~` mapping's expression is used as given), the mappings are kept in priority order, and a request is
// answered by the first mapping whose method and pattern match its path (the query string cut off).
//
// "Priority order" is Heimdall's documented precedence (heimdall-core/src/mapping/mod.rs, "Precedence"), computed
// once when the list is built, so that first-match answers what Heimdall answers: route patterns before regular
// expressions; route patterns by specificity, segment by segment from the left (a literal before `:name`/`*`,
// before `**`), then by method (the request's own before `ANY`; for `HEAD`, `HEAD` then `GET` then `ANY`); regular
// expressions by that method order, then priority, then id.
package dev.heimdall.jvm.bench

import dev.heimdall.uniffi.Mapping
import java.util.regex.Pattern

class RegexScan(mappings: List<Mapping>, inPriorityOrder: Boolean = true) {
    /** What a request resolved to: the mapping's id and what its pattern captured, by name. */
    data class Answer(val mappingId: Long, val params: Map<String, String>)

    private class Entry(val id: Long, val method: String, val pattern: Pattern, val paramNames: List<String>) {
        /** Whether this mapping applies to a request with [requestMethod] (`HEAD` requests also see `GET` ones). */
        fun appliesTo(requestMethod: String): Boolean =
            method == requestMethod || method == "ANY" || (method == "GET" && requestMethod == "HEAD")
    }

    private val entries: Array<Entry> =
        (if (inPriorityOrder) mappings.sortedWith(PRECEDENCE) else mappings).map(::compile).toTypedArray()

    val size: Int get() = entries.size

    /** The mapping the first match names, or `null`. */
    fun resolve(method: String, target: String): Answer? {
        val query = target.indexOf('?')
        val path = if (query < 0) target else target.substring(0, query)
        for (e in entries) {
            if (!e.appliesTo(method)) continue
            val m = e.pattern.matcher(path)
            if (m.matches()) {
                return Answer(e.id, e.paramNames.withIndex().associate { (i, name) -> name to m.group(i + 1) })
            }
        }
        return null
    }

    private companion object {
        /** Rank of a route segment in the specificity order. */
        fun rank(segment: String): Int = when {
            segment == "**" -> 2
            segment == "*" || segment.startsWith(":") -> 1
            else -> 0
        }

        /** Between mappings of equal path specificity: the request's own method (`HEAD` before `GET`), then `ANY`. */
        fun methodRank(method: String): Int = when (method) {
            "HEAD" -> 0
            "ANY" -> 2
            else -> 1
        }

        fun isRegex(m: Mapping): Boolean = m.pathPattern.startsWith("~")

        fun segments(m: Mapping): List<String> = if (m.pathPattern == "/") emptyList() else m.pathPattern.substring(1).split('/')

        val PRECEDENCE: Comparator<Mapping> = Comparator { a, b ->
            val byKind = isRegex(a).compareTo(isRegex(b))
            if (byKind != 0) return@Comparator byKind
            if (!isRegex(a)) {
                val (sa, sb) = segments(a) to segments(b)
                for (i in 0 until minOf(sa.size, sb.size)) {
                    val c = rank(sa[i]).compareTo(rank(sb[i]))
                    if (c != 0) return@Comparator c
                }
                // One is a prefix of the other in ranks: they never match the same path (`**` matches one segment
                // or more), so any order will do.
                val byLength = sa.size.compareTo(sb.size)
                if (byLength != 0) return@Comparator byLength
            }
            compareValuesBy(a, b, { methodRank(it.method) }, { it.priority }, { it.id })
        }

        fun compile(m: Mapping): Entry {
            val id = requireNotNull(m.id) { "the benchmark's mappings carry their ids" }
            if (isRegex(m)) return Entry(id, m.method, Pattern.compile(m.pathPattern.substring(1)), emptyList())
            val names = mutableListOf<String>()
            val source = StringBuilder()
            for (seg in segments(m)) {
                when {
                    seg == "**" -> source.append("/(.+)").also { names += "**" }
                    seg == "*" -> source.append("/[^/]+")
                    seg.startsWith(":") -> source.append("/([^/]+)").also { names += seg.substring(1) }
                    else -> source.append('/').append(Pattern.quote(seg))
                }
            }
            if (source.isEmpty()) source.append('/')
            return Entry(id, m.method, Pattern.compile(source.toString()), names)
        }
    }
}
