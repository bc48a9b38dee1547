// What every JVM frontend shares: the codes of Heimdall's exceptions and the refusal's JSON body.
@file:JvmName("Heimdall")

package dev.heimdall.jvm

import dev.heimdall.uniffi.AuthorizerSettings
import dev.heimdall.uniffi.HeimdallException
import dev.heimdall.uniffi.Refusal
import dev.heimdall.uniffi.settingsFromEnv

/** The request attribute (Servlet) and call attribute name (Ktor) that hold the [dev.heimdall.uniffi.Grant]. */
const val GRANT_ATTRIBUTE: String = "heimdall.grant"

/** The project's error code of this exception (`invalid_input`, `unauthenticated`, ... as in every frontend). */
val HeimdallException.code: String
    get() = when (this) {
        is HeimdallException.InvalidInput -> "invalid_input"
        is HeimdallException.Unauthenticated -> "unauthenticated"
        is HeimdallException.Forbidden -> "forbidden"
        is HeimdallException.NotFound -> "not_found"
        is HeimdallException.Conflict -> "conflict"
        is HeimdallException.Unavailable -> "unavailable"
        is HeimdallException.Config -> "config"
        is HeimdallException.Unexpected -> "unexpected"
    }

/** The HTTP status that answers this exception. */
val HeimdallException.status: Int
    get() = when (this) {
        is HeimdallException.InvalidInput -> 400
        is HeimdallException.Unauthenticated -> 401
        is HeimdallException.Forbidden -> 403
        is HeimdallException.NotFound -> 404
        is HeimdallException.Conflict -> 409
        is HeimdallException.Unavailable -> 503
        is HeimdallException.Config, is HeimdallException.Unexpected -> 500
    }

/** The body every frontend answers a refused request with: `{"error":{"code":"…","message":"…"}}`. */
fun Refusal.jsonBody(): String = "{\"error\":{\"code\":${jsonString(code)},\"message\":${jsonString(message)}}}"

/** A refusal for an exception the authorizer raised (a closed authorizer): 503 unless it says otherwise. */
internal fun HeimdallException.asRefusal(): Refusal = Refusal(status, code, message ?: code)

private fun jsonString(s: String): String {
    val out = StringBuilder(s.length + 2).append('"')
    for (c in s) {
        when {
            c == '"' -> out.append("\\\"")
            c == '\\' -> out.append("\\\\")
            c < ' ' || c == '\u2028' || c == '\u2029' -> out.append(String.format("\\u%04x", c.code))
            else -> out.append(c)
        }
    }
    return out.append('"').toString()
}

/** Settings that follow heimdall-http at [heimdallUrl] with [credential], every other setting at its default (for
 *  Java, which has no named arguments: `Heimdall.followSettings(...)`, then the setters). */
fun followSettings(jwksUrl: String, heimdallUrl: String, credential: String): AuthorizerSettings =
    AuthorizerSettings(jwksUrl = jwksUrl, heimdallUrl = heimdallUrl, credential = credential)

/** The settings from the environment (see the README): `Heimdall.settingsFromEnvironment()` from Java. */
fun settingsFromEnvironment(): AuthorizerSettings = settingsFromEnv()
