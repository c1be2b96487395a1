use std::time::Duration;

use http::StatusCode;

use super::handle::FakeApi;
use super::response::{FakeResponse, Fault, Latency};

async fn get(url: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn records_calls_and_applies_faults_in_order_on_their_paths() {
    let api = FakeApi::start(|r| {
        FakeResponse::json(StatusCode::OK, &serde_json::json!({ "path": r.path }))
    })
    .await
    .unwrap();
    api.inject(
        Fault::status(StatusCode::SERVICE_UNAVAILABLE)
            .on_path("/b")
            .times(2),
    );
    api.inject(
        Fault::status(StatusCode::TOO_MANY_REQUESTS)
            .json(&serde_json::json!({"message": "slow down"}))
            .header("retry-after", "3"),
    );
    let url = api.url();
    assert_eq!(get(&url, "/a?x=1").await.0, 429);
    assert_eq!(get(&url, "/a").await.0, 200);
    assert_eq!(get(&url, "/b").await.0, 503);
    assert_eq!(get(&url, "/b").await.0, 503);
    let (status, body) = get(&url, "/b").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"/b\""), "{body}");

    let calls = api.wait_for_calls(5).await;
    let statuses: Vec<u16> = calls.iter().map(|c| c.status.as_u16()).collect();
    assert_eq!(statuses, [429, 200, 503, 503, 200]);
    assert_eq!(calls[0].request.query_param("x"), Some("1"));
    assert_eq!(api.calls_to("/b").len(), 3);
}

#[tokio::test]
async fn http2_clients_keep_at_most_the_announced_streams_per_connection() {
    let api = FakeApi::builder()
        .max_concurrent_streams(3)
        .latency(Latency::Fixed(Duration::from_millis(300)))
        .start(|_| FakeResponse::empty(StatusCode::OK))
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let sends = (0..10).map(|i| {
        let client = client.clone();
        let url = format!("{}/push/{i}", api.url());
        async move { client.post(url).send().await.map(|r| r.status()) }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| matches!(s, Ok(StatusCode::OK))));
    assert_eq!(api.call_count(), 10);
    assert_eq!(api.connections(), 1, "one HTTP/2 connection");
    assert_eq!(api.peak_in_flight_per_connection(), 3);
    assert_eq!(api.peak_in_flight(), 3);
    assert_eq!(api.in_flight(), 0);
}

#[tokio::test]
async fn failure_rates_answer_their_share_of_requests() {
    let api = FakeApi::start(|_| FakeResponse::empty(StatusCode::OK))
        .await
        .unwrap();
    api.add_failure_rate(0.5, FakeResponse::empty(StatusCode::TOO_MANY_REQUESTS));
    let client = reqwest::Client::new();
    let mut limited = 0;
    for _ in 0..400 {
        let status = client.get(api.url()).send().await.unwrap().status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    // Binomial(400, 0.5): outside 120..=280 with a probability below 1e-15.
    assert!((120..=280).contains(&limited), "{limited} of 400");
    api.clear_failure_rates();
    api.add_failure_rate(1.0, FakeResponse::empty(StatusCode::INTERNAL_SERVER_ERROR));
    let status = client.get(api.url()).send().await.unwrap().status();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    api.inject(Fault::status(StatusCode::BAD_GATEWAY));
    let status = client.get(api.url()).send().await.unwrap().status();
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "injected faults come first"
    );
}

#[tokio::test]
async fn the_record_limit_keeps_counting() {
    let api = FakeApi::start(|_| FakeResponse::empty(StatusCode::NO_CONTENT))
        .await
        .unwrap();
    api.set_record_limit(1);
    let url = api.url();
    get(&url, "/1").await;
    get(&url, "/2").await;
    assert_eq!(api.call_count(), 2);
    assert_eq!(api.calls().len(), 1);
    api.clear();
    assert_eq!(api.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_answers() {
    let api = FakeApi::start(|_| FakeResponse::empty(StatusCode::OK))
        .await
        .unwrap();
    api.set_latency(Latency::Fixed(Duration::from_secs(30)));
    let url = api.url();
    let started = tokio::time::Instant::now();
    get(&url, "/slow").await;
    assert!(started.elapsed() >= Duration::from_secs(30));
}

#[test]
fn uniform_latency_stays_in_its_range() {
    let (low, high) = (Duration::from_millis(2), Duration::from_millis(3));
    for _ in 0..1000 {
        let d = Latency::Uniform(low, high).sample();
        assert!(d >= low && d <= high, "{d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precise_latency_is_never_early_and_its_hold_is_reported() {
    let latency = Duration::from_millis(30);
    let api = FakeApi::builder()
        .precise_latency(true)
        .latency(Latency::Fixed(latency))
        .start(|_| FakeResponse::empty(StatusCode::OK))
        .await
        .unwrap();
    assert_eq!(api.mean_hold(), None);
    let url = api.url();
    let timed = |path: &'static str| {
        let url = url.clone();
        async move {
            let started = std::time::Instant::now();
            let (status, _) = get(&url, path).await;
            (status, started.elapsed())
        }
    };
    let answers = futures::future::join_all([timed("/a"), timed("/b"), timed("/c")]).await;
    for (status, took) in answers {
        assert_eq!(status, 200);
        assert!(took >= latency, "answered after {took:?}");
    }
    let (held, late) = (api.mean_hold().unwrap(), api.mean_late().unwrap());
    assert!(held >= latency, "{held:?}");
    // Each request's lateness is its hold less the latency: so are the means (to the
    // nanosecond the integer division loses).
    let diff = held - late;
    assert!(
        diff >= latency - Duration::from_nanos(1) && diff <= latency + Duration::from_nanos(1),
        "held {held:?}, late {late:?}"
    );
    api.clear();
    assert_eq!(api.mean_late(), None);
}
