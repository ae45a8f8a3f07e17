// A PrivateNumber API client in the JDK alone (java.net.http, javax.crypto): signs each request
// (AKSK), binds an AXB pair, queries it and unbinds it.
//
//     java examples/clients/PrivnumClient.java [base] [appKey] [appSecret]
//
// (Java 11+ runs a single source file directly.) The signature is the reference API's: X-AKSK
// carries base64(HMAC-SHA256(app secret, Nonce + Created)); it covers neither the method, the path
// nor the body, so use https beyond a trusted network. Exits 1, naming the step, on any answer
// whose resultcode is not "0".

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.Base64;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class PrivnumClient {
    static final String AXB_PATH = "/rest/caas/relationnumber/partners/v1.0";
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    final String base, appKey, secret;

    PrivnumClient(String base, String appKey, String secret) {
        this.base = base;
        this.appKey = appKey;
        this.secret = secret;
    }

    /** The X-AKSK header of one request: a new nonce each time. */
    String token() throws Exception {
        String nonce = UUID.randomUUID().toString().replace("-", "").toUpperCase();
        String created = ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss'Z'"));
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        byte[] digest = mac.doFinal((nonce + created).getBytes(StandardCharsets.UTF_8));
        return String.format("UsernameToken Username=\"%s\",PasswordDigest=\"%s\",Nonce=\"%s\",Created=\"%s\"",
                appKey, Base64.getEncoder().encodeToString(digest), nonce, created);
    }

    /** One signed request; the answer's body (4xx answers carry a resultcode too). */
    String call(String method, String path, String json) throws Exception {
        HttpRequest.BodyPublisher body =
                json == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(json);
        HttpRequest request = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(Duration.ofSeconds(10))
                .header("Authorization", "AKSK realm=\"SDP\",profile=\"UsernameToken\",type=\"Appkey\"")
                .header("X-AKSK", token())
                .header("Content-Type", "application/json;charset=UTF-8")
                .method(method, body)
                .build();
        return HTTP.send(request, HttpResponse.BodyHandlers.ofString()).body();
    }

    /** A string field of a flat JSON answer (enough for these answers; use a JSON library in real code). */
    static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*\"([^\"]*)\"").matcher(json);
        return m.find() ? m.group(1) : null;
    }

    static String expectOk(String step, String answer) {
        if (!"0".equals(field(answer, "resultcode"))) {
            System.err.println(step + ": refused: " + answer);
            System.exit(1);
        }
        System.out.println(step + ": ok");
        return answer;
    }

    public static void main(String[] args) throws Exception {
        PrivnumClient client = new PrivnumClient(
                args.length > 0 ? args[0] : "http://127.0.0.1:8080",
                args.length > 1 ? args[1] : "demo-app",
                args.length > 2 ? args[2] : "demo-secret");
        String bind = "{\"areaCode\":\"0755\",\"callerNum\":\"+8613800000081\",\"calleeNum\":\"+8613900000082\","
                + "\"duration\":600,\"userData\":\"java-1\"}";
        String bound = expectOk("bind", client.call("POST", AXB_PATH, bind));
        String subscription = field(bound, "subscriptionId");
        System.out.println("  through " + field(bound, "relationNum") + " (" + subscription + ")");
        String query = "?subscriptionId=" + URLEncoder.encode(subscription, StandardCharsets.UTF_8);
        String found = expectOk("query", client.call("GET", AXB_PATH + query, null));
        if (!"java-1".equals(field(found, "userData"))) {
            System.err.println("query: the binding came back changed: " + found);
            System.exit(1);
        }
        expectOk("unbind", client.call("DELETE", AXB_PATH + query, null));
    }
}
