package dev.heimdall.jvm

import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.Decision
import dev.heimdall.uniffi.Grant
import dev.heimdall.uniffi.HeimdallException
import dev.heimdall.uniffi.Refusal
import io.ktor.http.ContentType
import io.ktor.http.HttpHeaders
import io.ktor.http.HttpMethod
import io.ktor.http.HttpStatusCode
import io.ktor.server.application.Application
import io.ktor.server.application.ApplicationCall
import io.ktor.server.application.ApplicationCallPipeline
import io.ktor.server.application.BaseApplicationPlugin
import io.ktor.server.request.header
import io.ktor.server.request.httpMethod
import io.ktor.server.request.uri
import io.ktor.server.response.header
import io.ktor.server.response.respondText
import io.ktor.util.AttributeKey
import io.ktor.util.pipeline.PipelinePhase

/**
 * A Ktor server plugin that authorises every call with an [Authorizer] just before routing, on what routing
 * reads: the raw request target (`call.request.uri`, exactly as on the request line) and `request.httpMethod`
 * (after the plugins that change it: AutoHeadResponse makes a `HEAD` a `GET`, XHttpMethodOverride applies its
 * header). It runs in a phase of its own between the Plugins and Call phases, so the order in which plugins and
 * `routing { }` are installed doesn't matter. It never blocks a thread: at once when the decision is cached,
 * else suspended on `authorizeRequestAsync`.
 *
 * A call let through carries its [Grant] in the call attribute [GrantKey] (`call.heimdallGrant`); a refused one
 * is answered with the status and JSON body every Heimdall frontend sends, and the pipeline stops there.
 *
 * `HEAD` without AutoHeadResponse is refused (400): Ktor then routes a `HEAD` only to `head()` routes and
 * routes for every method, while core answers a `HEAD` from `GET` mappings as the other routers do — the two
 * could pick different handlers. Install AutoHeadResponse to serve `HEAD` from `GET` routes.
 *
 * ```
 * install(HeimdallPlugin) { authorizer = Authorizer(settingsFromEnv()) }
 * ```
 */
class HeimdallPlugin private constructor(val authorizer: Authorizer) {
    /** The plugin's settings. */
    class Configuration {
        /** The authorizer deciding every call (required). */
        var authorizer: Authorizer? = null
    }

    companion object Plugin : BaseApplicationPlugin<Application, Configuration, HeimdallPlugin> {
        override val key: AttributeKey<HeimdallPlugin> = AttributeKey("Heimdall")

        /** Where a call's [Grant] is kept. */
        val GrantKey: AttributeKey<Grant> = AttributeKey(GRANT_ATTRIBUTE)

        /** The phase the plugin authorises in: after every plugin, before routing. */
        val AuthorizePhase: PipelinePhase = PipelinePhase("HeimdallAuthorize")

        private val headWithoutAutoHead = Refusal(
            400,
            "invalid_input",
            "HEAD is refused: without Ktor's AutoHeadResponse, Ktor routes HEAD differently from Heimdall's mappings",
        )

        override fun install(pipeline: Application, configure: Configuration.() -> Unit): HeimdallPlugin {
            val authorizer = Configuration().apply(configure).authorizer
                ?: throw IllegalArgumentException("HeimdallPlugin needs an authorizer: install(HeimdallPlugin) { authorizer = ... }")
            val fast = FastAuthorizer(authorizer)
            pipeline.insertPhaseBefore(ApplicationCallPipeline.Call, AuthorizePhase)
            pipeline.intercept(AuthorizePhase) {
                val call = context
                val request = call.request
                val method = request.httpMethod
                val decision = if (method == HttpMethod.Head) {
                    Decision.Refused(headWithoutAutoHead)
                } else {
                    val target = request.uri
                    val authorization = request.header(HttpHeaders.Authorization)
                    try {
                        fast.authorizeNow(method.value, target, authorization)
                            ?: authorizer.authorizeRequestAsync(method.value, target, authorization)
                    } catch (e: HeimdallException) {
                        Decision.Refused(e.asRefusal())
                    }
                }
                when (decision) {
                    is Decision.Allowed -> call.attributes.put(GrantKey, decision.grant)
                    is Decision.Refused -> {
                        val refusal = decision.refusal
                        if (refusal.status == 401) call.response.header(HttpHeaders.WWWAuthenticate, "Bearer")
                        call.respondText(refusal.jsonBody(), ContentType.Application.Json, HttpStatusCode.fromValue(refusal.status))
                        finish()
                    }
                }
            }
            return HeimdallPlugin(authorizer)
        }
    }
}

/** The grant of a call the plugin let through, `null` for one it did not see. */
val ApplicationCall.heimdallGrant: Grant?
    get() = attributes.getOrNull(HeimdallPlugin.GrantKey)
