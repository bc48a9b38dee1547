package dev.heimdall.jvm

import com.sun.jna.Native
import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.Decision
import dev.heimdall.uniffi.Grant
import dev.heimdall.uniffi.HeimdallException
import dev.heimdall.uniffi.Match
import dev.heimdall.uniffi.Refusal
import dev.heimdall.uniffi.Resolver
import java.nio.ByteBuffer

/**
 * The per-request hot path: heimdall-uniffi's two C functions `heimdall_jvm_authorize` and `heimdall_jvm_resolve`
 * (see its `fast.rs`), called by JNA direct mapping with the request packed into one direct buffer and the
 * answer written into another, decoded here into UniFFI's own records. The same answers as
 * `Authorizer.authorize` and `Resolver.resolve`, without the JNA structures UniFFI's bindings allocate for every
 * status, string and record (~40 µs a call there, ~1–2 µs here).
 */
internal object Fast {
    private const val TOO_SMALL = -1
    private const val CLOSED = -2
    private const val WOULD_WAIT = -4
    private const val MALFORMED = -5

    init {
        // The library UniFFI's bindings load (same name and class loader: JNA hands back the loaded library).
        val name = System.getProperty("uniffi.component.heimdall_uniffi.libraryOverride") ?: "heimdall_uniffi"
        Native.register(Fast::class.java, name)
    }

    @JvmStatic
    external fun heimdall_jvm_authorize(id: Long, request: ByteBuffer, requestLen: Int, out: ByteBuffer, outCap: Int, wait: Byte): Int

    @JvmStatic
    external fun heimdall_jvm_resolve(id: Long, request: ByteBuffer, requestLen: Int, out: ByteBuffer, outCap: Int): Int

    /** A thread's buffers: the answer (16 KiB holds any usual one) and the bytes of one string being decoded
     *  (grown to the longest string met). */
    private class Scratch {
        var out: ByteBuffer = ByteBuffer.allocateDirect(16 * 1024)
        var bytes = ByteArray(1024)
    }

    private val scratch = ThreadLocal.withInitial { Scratch() }

    private fun closed(): Nothing = throw HeimdallException.Unavailable("closed: this object was shut down")

    private val malformed = Refusal(400, "invalid_input", "the request could not be read (a malformed packed request, or one that is not UTF-8)")

    /** Calls [native] with this thread's output buffer, again once with a larger one if it was too small;
     *  the answer's length, or a negative code other than "too small". */
    private inline fun call(native: (ByteBuffer, Int) -> Int): Pair<Int, Scratch> {
        val s = scratch.get()
        var n = native(s.out, s.out.capacity())
        if (n == TOO_SMALL) {
            // No answer is this large in practice (a 16 KiB subject at most, a 2 KiB path); the larger buffer stays
            // this thread's (1 MiB at most). The call runs again: its stats count it twice.
            s.out = ByteBuffer.allocateDirect(1024 * 1024)
            n = native(s.out, s.out.capacity())
        }
        return n to s
    }

    /** The decision, or `null` when it would have to wait and [wait] is false. */
    fun authorize(id: Long, method: String, target: String, authorization: String?, wait: Boolean): Decision? {
        val request = Packed.pack(method, target, authorization)
        val (n, s) = call { out, cap -> heimdall_jvm_authorize(id, request, request.limit(), out, cap, if (wait) 1 else 0) }
        return when {
            n >= 0 -> Reader(s, n).decision()
            n == WOULD_WAIT -> null
            n == CLOSED -> closed()
            n == MALFORMED -> Decision.Refused(malformed)
            else -> throw HeimdallException.Unexpected("heimdall_jvm_authorize failed ($n)")
        }
    }

    fun resolve(id: Long, method: String, path: String): Match? {
        val request = Packed.pack(method, path, null)
        val (n, s) = call { out, cap -> heimdall_jvm_resolve(id, request, request.limit(), out, cap) }
        return when {
            n >= 0 -> Reader(s, n).match()
            n == CLOSED -> closed()
            n == MALFORMED -> throw HeimdallException.InvalidInput("path rejected: not UTF-8")
            else -> throw HeimdallException.Unexpected("heimdall_jvm_resolve failed ($n)")
        }
    }

    /** Reads an answer (big-endian integers; strings as a 4-byte length and UTF-8). */
    private class Reader(private val s: Scratch, length: Int) {
        private val buf: ByteBuffer = s.out.duplicate().position(0).limit(length)

        private fun str(): String {
            val len = buf.getInt()
            if (s.bytes.size < len) s.bytes = ByteArray(len)
            buf.get(s.bytes, 0, len)
            return String(s.bytes, 0, len, Charsets.UTF_8)
        }

        private fun optStr(): String? = if (buf.get() == 1.toByte()) str() else null

        private fun params(): Map<String, String> {
            val n = buf.getInt()
            if (n == 0) return emptyMap()
            val map = LinkedHashMap<String, String>(n * 2)
            repeat(n) { map[str()] = str() }
            return map
        }

        fun decision(): Decision = when (buf.get()) {
            0.toByte() -> {
                val subject = str()
                val action = optStr()
                val mappingId = if (buf.get() == 1.toByte()) buf.getLong() else null
                Decision.Allowed(Grant(subject, action, mappingId, params()))
            }
            else -> Decision.Refused(Refusal(buf.getInt(), str(), str()))
        }

        fun match(): Match? = when (buf.get()) {
            0.toByte() -> {
                val id = buf.getLong()
                val action = str()
                val pattern = str()
                val owner = optStr()
                Match(id, action, pattern, owner, params())
            }
            1.toByte() -> null
            else -> throw HeimdallException.InvalidInput("path rejected: ${str()}")
        }
    }
}

/**
 * An [Authorizer]'s per-request hot path (what [HeimdallFilter] and [HeimdallPlugin] call): the same decisions
 * as [Authorizer.authorizeRequest], one JNA call each. Thread-safe; the authorizer stays the owner (close it,
 * not this).
 */
class FastAuthorizer(val authorizer: Authorizer) {
    private val id: Long = authorizer.fastId().toLong()

    /** Decides one request: `authorization` is the `Authorization` header's value (`Bearer <token>`), if any.
     *  Blocks only when it must wait (a key fetch, a PDP call). */
    fun authorize(method: String, target: String, authorization: String?): Decision =
        Fast.authorize(id, method, target, authorization, wait = true)!!

    /** The decision if it needs nothing to wait for, else `null` (then ask `authorizeRequestAsync`). Never blocks. */
    fun authorizeNow(method: String, target: String, authorization: String?): Decision? =
        Fast.authorize(id, method, target, authorization, wait = false)
}

/** A [Resolver]'s hot path: the same answers as [Resolver.resolve], one JNA call each. */
class FastResolver(val resolver: Resolver) {
    private val id: Long = resolver.fastId().toLong()

    /** The mapping `(method, path)` resolves to, or `null`; `InvalidInput` for a non-canonical method or path. */
    fun resolve(method: String, path: String): Match? = Fast.resolve(id, method, path)
}
