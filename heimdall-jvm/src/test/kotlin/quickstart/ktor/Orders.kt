package quickstart.ktor

import dev.heimdall.jvm.HeimdallPlugin
import dev.heimdall.jvm.heimdallGrant
import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.settingsFromEnv
import io.ktor.server.application.install
import io.ktor.server.engine.embeddedServer
import io.ktor.server.netty.Netty
import io.ktor.server.response.respondText
import io.ktor.server.routing.get
import io.ktor.server.routing.routing

fun main() {
    val port = System.getenv("PORT")?.toInt() ?: 8080
    embeddedServer(Netty, port = port, host = "127.0.0.1") {
        // Every call is authorised before routing; the settings come from the environment.
        install(HeimdallPlugin) { authorizer = Authorizer(settingsFromEnv()) }
        routing {
            get("/orders/{id}") {
                val grant = call.heimdallGrant!!
                call.respondText("order ${call.parameters["id"]} for ${grant.subject} (${grant.action})")
            }
        }
    }.start(wait = true)
}
