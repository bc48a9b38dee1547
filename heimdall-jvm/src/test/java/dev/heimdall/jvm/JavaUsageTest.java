package dev.heimdall.jvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.heimdall.uniffi.Authorizer;
import dev.heimdall.uniffi.AuthorizerSettings;
import dev.heimdall.uniffi.HeimdallException;
import dev.heimdall.uniffi.Mapping;
import dev.heimdall.uniffi.Match;
import dev.heimdall.uniffi.Resolver;
import java.util.List;
import org.junit.jupiter.api.Test;

/** heimdall-jvm from Java: the resolver, settings, errors with their code and status, the filter's type. */
class JavaUsageTest {
    @Test
    void theResolverFromJava() throws HeimdallException {
        List<Mapping> mappings = List.of(
                new Mapping(1L, "GET", "/orders/:id", "orders:read", null, 0),
                new Mapping(2L, "POST", "/orders", "orders:create", "sales", 0));
        try (Resolver resolver = new Resolver(mappings, 7L)) {
            assertEquals(7L, resolver.version());
            Match match = resolver.resolve("GET", "/orders/42?x=1");
            assertEquals(1L, match.getMappingId());
            assertEquals("orders:read", match.getAction());
            assertEquals("42", match.getParams().get("id"));
            assertNull(resolver.resolve("DELETE", "/orders/42"));
            HeimdallException.InvalidInput e =
                    assertThrows(HeimdallException.InvalidInput.class, () -> resolver.resolve("GET", "/orders/%34%32"));
            assertEquals("invalid_input", Heimdall.getCode(e));
            assertEquals(400, Heimdall.getStatus(e));
        }
    }

    @Test
    void settingsAndConfigurationErrorsFromJava() {
        AuthorizerSettings settings = Heimdall.followSettings("https://idp.example/certs", "https://heimdall.example", "hk_x");
        settings.setUnmapped("sometimes");
        HeimdallException.Config e = assertThrows(HeimdallException.Config.class, () -> new Authorizer(settings));
        assertTrue(e.getMessage().contains("unmapped"), e.getMessage());
        assertEquals("config", Heimdall.getCode(e));
        assertEquals(500, Heimdall.getStatus(e));
        Class<? extends jakarta.servlet.Filter> filter = HeimdallFilter.class;
        assertTrue(jakarta.servlet.Filter.class.isAssignableFrom(filter));
    }
}
