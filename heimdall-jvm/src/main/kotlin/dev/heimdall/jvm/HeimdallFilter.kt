package dev.heimdall.jvm

import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.Decision
import dev.heimdall.uniffi.Grant
import dev.heimdall.uniffi.HeimdallException
import dev.heimdall.uniffi.Refusal
import jakarta.servlet.DispatcherType
import jakarta.servlet.Filter
import jakarta.servlet.FilterChain
import jakarta.servlet.ServletRequest
import jakarta.servlet.ServletResponse
import jakarta.servlet.http.HttpServletRequest
import jakarta.servlet.http.HttpServletResponse

/**
 * A Jakarta Servlet filter (Spring Boot, Jetty, Javalin, Tomcat) that authorises every request with
 * [authorizer] before the application sees it, from the raw request target: the method as received and
 * `getRequestURI()` (undecoded, with the context path, so mappings name the full path) plus the query. A request
 * let through carries its [Grant] in the request attribute [GRANT_ATTRIBUTE] ([grantOf]); a refused one is
 * answered here with the status and JSON body every Heimdall frontend sends (401 adds `WWW-Authenticate: Bearer`).
 *
 * Only a request's first dispatch is authorised: forwards, includes, error pages and async re-dispatches of a
 * request that was let through belong to it.
 */
class HeimdallFilter(authorizer: Authorizer) : Filter {
    private val fast = FastAuthorizer(authorizer)

    override fun doFilter(req: ServletRequest, res: ServletResponse, chain: FilterChain) {
        if (req !is HttpServletRequest || res !is HttpServletResponse || req.dispatcherType != DispatcherType.REQUEST) {
            chain.doFilter(req, res)
            return
        }
        val query = req.queryString
        val target = if (query == null) req.requestURI else req.requestURI + "?" + query
        val decision = try {
            fast.authorize(req.method, target, req.getHeader("Authorization"))
        } catch (e: HeimdallException) {
            Decision.Refused(e.asRefusal())
        }
        when (decision) {
            is Decision.Allowed -> {
                req.setAttribute(GRANT_ATTRIBUTE, decision.grant)
                chain.doFilter(req, res)
            }
            is Decision.Refused -> refuse(res, decision.refusal)
        }
    }

    companion object {
        /** The grant of a request this filter let through, `null` for one it did not see. */
        @JvmStatic
        fun grantOf(request: ServletRequest): Grant? = request.getAttribute(GRANT_ATTRIBUTE) as? Grant

        private fun refuse(res: HttpServletResponse, refusal: Refusal) {
            val body = refusal.jsonBody().toByteArray(Charsets.UTF_8)
            res.status = refusal.status
            res.contentType = "application/json"
            if (refusal.status == 401) res.setHeader("WWW-Authenticate", "Bearer")
            res.setContentLength(body.size)
            res.outputStream.write(body)
        }
    }
}
