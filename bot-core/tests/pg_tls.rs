//! TLS to PostgreSQL: `sslmode` as libpq honours it, checked on the server side with
//! `pg_stat_ssl`. Needs the local server with `ssl=on` (Debian's snakeoil certificate, whose name
//! is the host name of the machine that made it); fails, never skips, without it.

mod support;

use std::time::Duration;

use bot_core::pg::{PgPool, SslMode};
use support::pg::{database_url, eventually, fresh_pool_with, queue_builder};

/// Debian's self-signed server certificate, which the local server presents.
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The DNS name the snakeoil certificate is made out to (`localhost`, or the name of the machine
/// that installed PostgreSQL), read with `openssl`, which Debian's `ssl-cert` package brings.
fn snakeoil_name() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "x509",
            "-in",
            SNAKEOIL,
            "-noout",
            "-ext",
            "subjectAltName",
            "-subject",
        ])
        .output()
        .expect("openssl runs (the ssl-cert package that makes the snakeoil certificate needs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let san = text
        .split([',', '\n'])
        .find_map(|part| part.trim().strip_prefix("DNS:"));
    let cn = || {
        text.lines()
            .find_map(|line| line.split("CN = ").nth(1).or(line.split("CN=").nth(1)))
    };
    san.or_else(cn)
        .unwrap_or_else(|| panic!("no name in {SNAKEOIL}: {text}"))
        .trim()
        .to_owned()
}

fn with_param(url: &str, param: &str) -> String {
    if url.contains("://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{param}")
    } else {
        format!("{url} {param}")
    }
}

/// Whether the connection behind `pool` is encrypted, as the server sees it.
async fn encrypted(pool: &PgPool) -> Result<bool, bot_core::Error> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl answers");
    Ok(row.get(0))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" <- ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn pool(url: &str) -> PgPool {
    PgPool::builder(url)
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .build()
        .expect("pool builds")
}

#[tokio::test]
async fn sslmode_require_connects_encrypted_and_disable_does_not() {
    let url = database_url();
    let required = pool(&with_param(&url, "sslmode=require"));
    assert!(
        encrypted(&required)
            .await
            .unwrap_or_else(|e| panic!("sslmode=require connects to {url}: {}", chain(&e))),
        "sslmode=require must give an encrypted connection"
    );
    let disabled = pool(&with_param(&url, "sslmode=disable"));
    assert!(
        !encrypted(&disabled).await.unwrap(),
        "sslmode=disable stays in clear text"
    );
    // libpq's default, prefer, encrypts when the server offers TLS (this one does).
    assert!(encrypted(&pool(&url)).await.unwrap(), "prefer encrypts");
    // The builder setting overrides the URL.
    let overridden = PgPool::builder(with_param(&url, "sslmode=disable"))
        .ssl_mode(SslMode::Require)
        .max_size(1)
        .build()
        .unwrap();
    assert!(encrypted(&overridden).await.unwrap());
}

#[tokio::test]
async fn verify_full_with_a_wrong_root_certificate_fails_naming_the_problem() {
    let url = database_url();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["not-our-server".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let wrong_root = params.self_signed(&key).unwrap().pem();
    for mode in ["verify-full", "verify-ca"] {
        let pool = PgPool::builder(with_param(&url, &format!("sslmode={mode}")))
            .ssl_root_cert_pem(wrong_root.clone())
            .max_size(1)
            .create_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let e = encrypted(&pool)
            .await
            .expect_err("an untrusted server certificate is refused");
        let text = e.to_string();
        assert!(
            text.contains("TLS handshake") && text.contains("invalid peer certificate"),
            "{mode}: the message names the certificate problem: {text}"
        );
        assert!(text.contains("UnknownIssuer"), "{mode}: {text}");
    }
    // The same through `sslrootcert` in the URL, as a file.
    let dir = std::env::temp_dir().join(format!("botrt-pg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wrong-root.pem");
    std::fs::write(&file, &wrong_root).unwrap();
    let pool = pool(&with_param(
        &url,
        &format!("sslmode=verify-full&sslrootcert={}", file.display())
            .replace('&', if url.contains("://") { "&" } else { " " }),
    ));
    let e = encrypted(&pool).await.expect_err("refused");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn verify_ca_checks_the_chain_and_verify_full_also_the_host_name() {
    let url = database_url();
    assert!(
        url.contains("127.0.0.1"),
        "this test needs DATABASE_URL to name 127.0.0.1 (not the certificate's name): {url}"
    );
    let by_ip = |mode: SslMode| {
        PgPool::builder(&url)
            .ssl_mode(mode)
            .ssl_root_cert(SNAKEOIL)
            .max_size(1)
            .build()
            .unwrap()
    };
    // The chain is good, the name (127.0.0.1) is not the certificate's (localhost).
    assert!(encrypted(&by_ip(SslMode::VerifyCa)).await.unwrap());
    let e = encrypted(&by_ip(SslMode::VerifyFull)).await.unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");
    // Connect to 127.0.0.1 (`hostaddr`) under the certificate's name (`host`), which is what
    // verify-full checks, whether or not that name resolves here.
    let name = snakeoil_name();
    let by_name = PgPool::builder(with_param(
        &url.replace("127.0.0.1", &name),
        "hostaddr=127.0.0.1",
    ))
    .ssl_mode(SslMode::VerifyFull)
    .ssl_root_cert(SNAKEOIL)
    .max_size(1)
    .build()
    .unwrap();
    assert!(
        encrypted(&by_name)
            .await
            .unwrap_or_else(|e| panic!("verify-full to {name}: {}", chain(&e)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_connection_uses_the_pools_tls_settings() {
    let pool = fresh_pool_with("tls_listen", |b| {
        b.ssl_mode(SslMode::Require)
            .application_name("botrt-tls-listen")
    })
    .await;
    let queue = queue_builder(&pool).build().unwrap();
    eventually("the LISTEN connection", Duration::from_secs(10), || async {
        queue.is_listening().then_some(())
    })
    .await;
    let conn = pool.get().await.unwrap();
    let rows = conn
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name LIKE 'botrt-tls-listen%' AND a.query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one LISTEN connection");
    assert!(
        rows[0].get::<_, bool>(0),
        "the LISTEN connection is encrypted"
    );
    queue.shutdown().await;
}
