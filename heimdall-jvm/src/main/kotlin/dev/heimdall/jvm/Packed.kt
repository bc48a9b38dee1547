package dev.heimdall.jvm

import java.nio.ByteBuffer
import java.nio.CharBuffer
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction

/**
 * One request as one buffer for the hot path ([Fast]: heimdall-uniffi's `heimdall_jvm_authorize` and
 * `heimdall_jvm_resolve`): one call across the FFI with the request read in place by Rust (a direct buffer is
 * passed without a copy), instead of one allocation call per string argument. The layout (`Packed` in
 * heimdall-uniffi's `fast.rs`): the
 * method's length (4 bytes, big endian), the method, the target's length, the target, then the `Authorization`
 * header value to the end.
 *
 * Each thread keeps one direct buffer of up to [KEPT_BYTES]; a larger request (a very long token) gets a buffer
 * of its own that is not kept.
 */
internal object Packed {
    private const val KEPT_BYTES = 64 * 1024
    private val buffers = ThreadLocal.withInitial { ByteBuffer.allocateDirect(8 * 1024) }

    /** The request, packed into this thread's buffer (valid until the thread's next call). Each string is
     *  encoded with `String.toByteArray(UTF_8)`, which for the usual all-ASCII request is one vectorised check
     *  and one array copy, then copied into the buffer in bulk (encoding char by char cost ~1.5 µs a request). */
    fun pack(method: String, target: String, authorization: String?): ByteBuffer {
        val m = routed(method)
        val t = routed(target)
        val a = authorization?.toByteArray(Charsets.UTF_8)
        val size = 8 + m.size + t.size + (a?.size ?: 0)
        var buf = buffers.get()
        if (buf.capacity() < size) {
            buf = ByteBuffer.allocateDirect(size)
            if (size <= KEPT_BYTES) buffers.set(buf)
        }
        buf.clear()
        buf.putInt(m.size).put(m).putInt(t.size).put(t)
        if (a != null) buf.put(a)
        return buf.flip()
    }

    /** A method or target as UTF-8; one with a lone surrogate (which `toByteArray` would write as `?`, moving
     *  the query's start) as a byte that is not UTF-8, so that core refuses the request (400). */
    private fun routed(s: String): ByteArray {
        if (s.none(Char::isSurrogate)) return s.toByteArray(Charsets.UTF_8)
        return try {
            val bytes = Charsets.UTF_8.newEncoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT)
                .encode(CharBuffer.wrap(s))
            ByteArray(bytes.remaining()).also { bytes.get(it) }
        } catch (_: CharacterCodingException) {
            byteArrayOf(0xFF.toByte())
        }
    }
}
