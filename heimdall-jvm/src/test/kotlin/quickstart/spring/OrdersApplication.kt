package quickstart.spring

import dev.heimdall.jvm.HeimdallFilter
import dev.heimdall.uniffi.Authorizer
import dev.heimdall.uniffi.settingsFromEnv
import jakarta.servlet.http.HttpServletRequest
import org.springframework.boot.autoconfigure.SpringBootApplication
import org.springframework.boot.runApplication
import org.springframework.boot.web.servlet.FilterRegistrationBean
import org.springframework.context.annotation.Bean
import org.springframework.web.bind.annotation.GetMapping
import org.springframework.web.bind.annotation.PathVariable
import org.springframework.web.bind.annotation.RestController

@SpringBootApplication(proxyBeanMethods = false)
class OrdersApplication {
    // Every request is authorised before Spring routes it, by the last filter (Spring Boot's default order: after
    // any filter that rewrites the method or path); the settings come from the environment.
    @Bean
    fun heimdall(): FilterRegistrationBean<HeimdallFilter> =
        FilterRegistrationBean(HeimdallFilter(Authorizer(settingsFromEnv())))
}

@RestController
class Orders {
    @GetMapping("/orders/{id}")
    fun order(@PathVariable id: String, request: HttpServletRequest): String {
        val grant = HeimdallFilter.grantOf(request)!!
        return "order $id for ${grant.subject} (${grant.action})"
    }
}

fun main(args: Array<String>) {
    runApplication<OrdersApplication>(*args)
}
