//! deploy/'s nginx in front of two real `careslot-api` processes sharing
//! PostgreSQL and Redis, as in production: nginx from Debian's package runs
//! the very template under deploy/nginx/ (rendered with local ports and a
//! certificate from a throwaway CA) and the test talks to it over HTTPS only.
//! It checks the redirect, a GraphQL query, the security headers, that TLS 1.1
//! is refused, that /metrics stays private, a websocket subscription receiving
//! a booking made through nginx, and the per-IP rate limit. No nginx: fail.

mod common;

use careslot_tests::postgres::TestDatabase;
use common::{Server, WsClient, set_up};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DESK: &str = "subscription($l: UUID!) { appointmentsChanged(locationId: $l) { kind appointment { id status } } }";

/// nginx from Debian's package (`/usr/sbin` is not on every PATH).
fn nginx_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")]);
    for dir in candidates {
        let path = dir.join("nginx");
        if path.is_file() {
            return path;
        }
    }
    panic!("nginx is required for this test (Debian package `nginx`; .ci/run installs it)");
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is required for this test: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=careslot test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write ext");
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
        dir,
    );
    run(
        "openssl",
        &["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"],
        dir,
    );
}

/// deploy/'s template with every `${NAME}` filled in from `values`.
fn render_template(values: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/templates/default.conf.template");
    let mut text = std::fs::read_to_string(&path).expect("deploy/nginx template");
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(!text.contains("${"), "template variable left unset:\n{text}");
    text
}

/// A running nginx with a private prefix; stopped when dropped.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    http_port: u16,
    https_port: u16,
}

impl Nginx {
    fn start(upstreams: [&str; 2]) -> Self {
        let binary = nginx_binary();
        let dir = tempfile::tempdir().expect("tmp");
        // Workers run as an unprivileged user when the test runs as root.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        make_certificates(dir.path());
        let (http_port, https_port) = (common::free_port(), common::free_port());
        let d = dir.path().display();
        let site = render_template(&[
            ("CARESLOT_API_1", upstreams[0].to_owned()),
            ("CARESLOT_API_2", upstreams[1].to_owned()),
            ("NGINX_SERVER_NAME", "localhost".to_owned()),
            ("NGINX_HTTP_PORT", http_port.to_string()),
            ("NGINX_HTTPS_PORT", https_port.to_string()),
            ("NGINX_TLS_CERT", format!("{d}/cert.pem")),
            ("NGINX_TLS_KEY", format!("{d}/key.pem")),
        ]);
        std::fs::write(dir.path().join("careslot.conf"), site).expect("write site");
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "worker_processes 1;\npid {d}/nginx.pid;\nevents {{ worker_connections 512; }}\nhttp {{\n  log_format upstream '$upstream_addr $status $request';\n  access_log {d}/access.log upstream;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/careslot.conf;\n}}\n"
            ),
        )
        .expect("write nginx.conf");
        let child = Command::new(binary)
            .args([
                "-p",
                &d.to_string(),
                "-e",
                &format!("{d}/error.log"),
                "-c",
                &format!("{d}/nginx.conf"),
            ])
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        Self {
            child,
            dir,
            http_port,
            https_port,
        }
    }

    fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// An HTTPS client trusting only the test CA (no redirects followed).
    fn client(&self) -> reqwest::Client {
        careslot_tests::http(); // installs the process's rustls provider
        let ca = std::fs::read(self.dir.path().join("ca.pem")).expect("ca");
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// A websocket TLS connector trusting only the test CA.
    fn ws_tls(&self) -> tokio_tungstenite::Connector {
        let der = std::fs::read(self.dir.path().join("ca.der")).expect("ca.der");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.into()).expect("root certificate");
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_tungstenite::Connector::Rustls(Arc::new(config))
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(response) = client.get(self.https("/healthz")).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nginx did not proxy /healthz within 20 s:\n{}", self.error_log());
    }

    /// `openssl s_client` limited to one protocol version: the protocol the
    /// handshake negotiated (`None` when it failed) and openssl's output.
    fn handshake(&self, version_flag: &str) -> (Option<String>, String) {
        // SECLEVEL=0 lets the client offer TLS 1.1 at all, so a refusal is the server's.
        let output = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{}", self.https_port)])
            .args([
                "-servername",
                "localhost",
                version_flag,
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("openssl s_client runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        // "New, TLSv1.2, Cipher is …" after a handshake, "New, (NONE), …" without.
        let negotiated = text
            .lines()
            .find_map(|line| line.strip_prefix("New, "))
            .and_then(|rest| rest.split(',').next())
            .filter(|protocol| protocol.starts_with("TLS"))
            .map(str::to_owned);
        (negotiated, text)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of master and workers.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gql(
    client: &reqwest::Client,
    nginx: &Nginx,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (reqwest::header::HeaderMap, Value) {
    let mut request = client
        .post(nginx.https("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request through nginx");
    assert_eq!(response.status(), 200, "{}", nginx.error_log());
    let headers = response.headers().clone();
    (headers, response.json().await.expect("json"))
}

/// The single value of `name`, failing when it is missing or repeated.
fn one_header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    let values: Vec<_> = headers.get_all(name).iter().collect();
    assert_eq!(values.len(), 1, "{name} must appear exactly once: {values:?}");
    values[0].to_str().expect("ascii header")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_from_deploy_serves_two_instances_over_tls() {
    let database = TestDatabase::create().await;
    let channel = common::fresh_channel();
    let mut env = common::shared_env(&database.url, &channel);
    // nginx's own per-IP limit is the one under test here.
    env.push(("CARESLOT_RATE_LIMIT_IP_PER_MINUTE", "1000000"));
    let dir = tempfile::tempdir().expect("tmp");
    let a = Server::start(dir.path(), &env).await;
    let b = Server::start(dir.path(), &env).await;
    let nginx = Nginx::start([
        a.base.trim_start_matches("http://"),
        b.base.trim_start_matches("http://"),
    ]);
    let client = nginx.client();
    nginx.wait_ready(&client).await;

    // Plain HTTP only redirects to HTTPS.
    let plain = client
        .get(format!("http://127.0.0.1:{}/graphql?x=1", nginx.http_port))
        .send()
        .await
        .expect("http answer");
    assert_eq!(plain.status(), 301);
    assert_eq!(
        plain.headers()["location"],
        format!("https://127.0.0.1:{}/graphql?x=1", nginx.https_port).as_str()
    );

    // A GraphQL query over HTTPS, with the security headers, each once.
    let s = set_up(&b).await;
    let (headers, me) = gql(&client, &nginx, Some(&s.admin), "{ me { email role } }", json!({})).await;
    assert_eq!(me["data"]["me"]["role"], "ADMIN", "{me}");
    assert_eq!(
        one_header(&headers, "strict-transport-security"),
        "max-age=63072000; includeSubDomains"
    );
    assert_eq!(one_header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(one_header(&headers, "x-frame-options"), "DENY");
    assert_eq!(one_header(&headers, "referrer-policy"), "no-referrer");
    assert!(one_header(&headers, "content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(one_header(&headers, "cache-control"), "no-store");
    assert_eq!(one_header(&headers, "server"), "nginx", "no version disclosed");

    // TLS 1.2 is accepted, TLS 1.1 refused.
    let (negotiated, text) = nginx.handshake("-tls1_2");
    assert_eq!(negotiated.as_deref(), Some("TLSv1.2"), "{text}");
    let (negotiated, text) = nginx.handshake("-tls1_3");
    assert_eq!(negotiated.as_deref(), Some("TLSv1.3"), "{text}");
    let (negotiated, text) = nginx.handshake("-tls1_1");
    assert_eq!(negotiated, None, "TLS 1.1 accepted:\n{text}");

    // /metrics and /readyz answer on the instances, never through nginx.
    let direct = careslot_tests::get(&format!("{}/metrics", a.base))
        .await
        .expect("direct");
    assert!(direct.text().await.expect("body").contains("careslot_"));
    for path in [
        "/metrics",
        "/metrics/",
        "//metrics",
        "/%6Detrics",
        "/metrics?format=text",
        "/readyz",
        "/graphql/../metrics",
    ] {
        let response = client.get(nginx.https(path)).send().await.expect("answer");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status == 404 || status == 400, "{path} through nginx answered {status}");
        assert!(!body.contains("careslot_"), "{path} leaked metrics");
    }

    // Two subscribers through nginx (round robin puts them on both
    // instances) see a booking mutation sent through nginx.
    let ws_url = format!("wss://localhost:{}/graphql/ws", nginx.https_port);
    let mut desks = Vec::new();
    for (i, protocol) in ["graphql-transport-ws", "graphql-transport-ws"].into_iter().enumerate() {
        let mut desk = WsClient::initialized_with(&ws_url, protocol, &s.admin, Some(nginx.ws_tls())).await;
        desk.subscribe(protocol, &format!("desk{i}"), DESK, json!({ "l": s.location }))
            .await;
        desks.push(desk);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, booked) = gql(
        &client,
        &nginx,
        Some(&s.admin),
        "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }",
        json!({ "i": { "providerId": s.provider, "patientId": s.patient, "appointmentTypeId": s.kind, "start": s.slot } }),
    )
    .await;
    let id = booked["data"]["bookAppointment"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("booking through nginx: {booked}"))
        .to_owned();
    for (i, desk) in desks.iter_mut().enumerate() {
        let event = desk.next().await;
        assert_eq!(event["type"], "next", "{event}");
        assert_eq!(event["id"], format!("desk{i}"));
        let change = &event["payload"]["data"]["appointmentsChanged"];
        assert_eq!(change["kind"], "CREATED", "{event}");
        assert_eq!(change["appointment"]["id"], id.as_str());
    }

    // Both instances served requests through the upstream. nginx writes a
    // request's line after its answer has left, so on a loaded machine the
    // last line may trail the answer: read until both appear, for a while.
    let addresses = [&a, &b].map(|instance| instance.base.trim_start_matches("http://").to_owned());
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(nginx.dir.path().join("access.log")).unwrap_or_default();
        if addresses.iter().all(|address| log.contains(address.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for address in &addresses {
        assert!(log.contains(address.as_str()), "no request reached {address}:\n{log}");
    }

    // The per-IP limit: a burst far above 20/s + 40 is cut with 429s, which
    // carry the security headers too.
    let mut burst = Vec::new();
    for _ in 0..120 {
        let request = client
            .post(nginx.https("/graphql"))
            .json(&json!({ "query": "{ __typename }" }))
            .send();
        burst.push(tokio::spawn(request));
    }
    let mut limited = 0;
    for request in burst {
        let response = request.await.expect("task").expect("answer");
        if response.status() == 429 {
            assert_eq!(one_header(response.headers(), "x-frame-options"), "DENY");
            limited += 1;
        }
    }
    assert!(limited > 0, "nginx let 120 simultaneous requests from one IP through");

    let (status, _) = a.terminate();
    assert!(status.success());
    let (status, _) = b.terminate();
    assert!(status.success());
}
