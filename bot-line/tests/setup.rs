//! The calls a bot sets itself up with, against the fake LINE API: rich menus (with their image on
//! the data API) and the webhook endpoint.

mod support;

use std::time::Duration;

use bot_core::RetryPolicy;
use bot_core::testing::fake_api::{FakeApi, FakeResponse, Fault};
use bot_line::model::send::ApiError as LineErrorBody;
use bot_line::model::{
    ImageFormat, RichMenu, RichMenuAction, RichMenuArea, RichMenuBounds, RichMenuSize,
};
use bot_line::testing::FakeLine;
use bot_line::{ConfigureApi, ErrorKind, LineClient};
use bytes::Bytes;
use http::StatusCode;
use support::TOKEN;

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

async fn setup() -> (FakeLine, LineClient) {
    let fake = FakeLine::start(TOKEN).await.unwrap();
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .retry(quick_retries())
        .build()
        .unwrap();
    (fake, client)
}

fn menu(areas: usize) -> RichMenu {
    let width = 2500 / u32::try_from(areas.max(1)).unwrap();
    (0..areas).fold(
        RichMenu::new(RichMenuSize::HALF, "main", "Menu").selected(true),
        |menu, i| {
            let x = width * u32::try_from(i).unwrap();
            menu.area(RichMenuArea::new(
                RichMenuBounds::new(x, 0, width, 843),
                RichMenuAction::postback(format!("Area {i}"), format!("area={i}")),
            ))
        },
    )
}

fn png() -> Bytes {
    Bytes::from_static(b"\x89PNG\r\n\x1a\nfake image")
}

#[tokio::test]
async fn a_rich_menu_is_made_shown_by_default_and_to_a_user_and_taken_away() {
    let (fake, client) = setup().await;
    let id = client.create_rich_menu(&menu(2)).await.unwrap();
    assert!(id.starts_with("richmenu-"), "{id}");

    let read = client.rich_menu(&id).await.unwrap();
    assert_eq!(read.rich_menu_id, id);
    assert_eq!(read.menu, menu(2), "LINE keeps the menu as it was sent");
    let listed = client.rich_menus().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|m| m.rich_menu_id.as_str())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );

    // Without its image LINE will not show it.
    let error = client.set_default_rich_menu(&id).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.status()),
        (ErrorKind::Api, Some(StatusCode::BAD_REQUEST))
    );
    client
        .upload_rich_menu_image(&id, ImageFormat::Png, png())
        .await
        .unwrap();
    assert_eq!(
        fake.rich_menu_image(&id),
        Some(("image/png".to_owned(), png()))
    );
    // One image per menu; a second upload is refused, and not tried again.
    let error = client
        .upload_rich_menu_image(&id, ImageFormat::Jpeg, png())
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.attempts()), (ErrorKind::Api, 1));
    assert!(
        error
            .details::<LineErrorBody>()
            .unwrap()
            .message
            .contains("already")
    );

    assert_eq!(client.default_rich_menu().await.unwrap(), None);
    client.set_default_rich_menu(&id).await.unwrap();
    assert_eq!(client.default_rich_menu().await.unwrap(), Some(id.clone()));
    assert_eq!(fake.default_rich_menu(), Some(id.clone()));
    client.link_rich_menu("Ualice", &id).await.unwrap();
    assert_eq!(fake.linked_rich_menu("Ualice"), Some(id.clone()));

    client.unlink_rich_menu("Ualice").await.unwrap();
    assert_eq!(fake.linked_rich_menu("Ualice"), None);
    client.cancel_default_rich_menu().await.unwrap();
    assert_eq!(client.default_rich_menu().await.unwrap(), None);
    client.delete_rich_menu(&id).await.unwrap();
    let error = client.rich_menu(&id).await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    assert!(client.rich_menus().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_image_goes_to_the_data_api() {
    let (fake, _) = setup().await;
    let data = FakeApi::start(|_| FakeResponse::json(StatusCode::OK, &serde_json::json!({})))
        .await
        .unwrap();
    let client = LineClient::builder(TOKEN)
        .api_base(fake.url())
        .data_api_base(data.url())
        .build()
        .unwrap();
    client
        .upload_rich_menu_image("richmenu-1", ImageFormat::Jpeg, png())
        .await
        .unwrap();
    let calls = data.calls_to("/v2/bot/richmenu/richmenu-1/content");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request.header("content-type"), Some("image/jpeg"));
    assert_eq!(calls[0].request.bearer(), Some(TOKEN));
    assert_eq!(calls[0].request.body, png());
    assert_eq!(fake.api().call_count(), 0, "nothing went to the main api");
}

#[tokio::test]
async fn menus_images_and_ids_over_lines_limits_are_refused_before_sending() {
    let (fake, client) = setup().await;
    for areas in [0, 21] {
        let error = client.create_rich_menu(&menu(areas)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{areas} areas");
    }
    let mut long_bar = menu(1);
    long_bar.chat_bar_text = "fifteen chars!!".into();
    assert_eq!(
        client.create_rich_menu(&long_bar).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    let too_big = Bytes::from(vec![0_u8; 1024 * 1024 + 1]);
    let error = client
        .upload_rich_menu_image("richmenu-1", ImageFormat::Png, too_big)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    let error = client
        .link_rich_menu("../all", "richmenu-1")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert_eq!(fake.api().call_count(), 0);
}

#[tokio::test]
async fn creating_is_not_repeated_after_a_failure_that_may_have_made_the_menu_but_settings_are() {
    let (fake, client) = setup().await;
    fake.api()
        .inject(Fault::status(StatusCode::BAD_GATEWAY).on_path("/v2/bot/richmenu"));
    let error = client.create_rich_menu(&menu(1)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(error.attempts(), 1);
    assert!(error.maybe_delivered(), "a 502 may hide a menu made");
    assert!(
        !bot_core::Error::from(error).is_retryable(),
        "nor does the runtime retry it"
    );

    let id = client.create_rich_menu(&menu(1)).await.unwrap();
    client
        .upload_rich_menu_image(&id, ImageFormat::Png, png())
        .await
        .unwrap();
    fake.api()
        .inject(Fault::status(StatusCode::BAD_GATEWAY).on_path("/v2/bot/user/all/richmenu"));
    client.set_default_rich_menu(&id).await.unwrap();
    let statuses: Vec<u16> = fake
        .api()
        .calls_to(&format!("/v2/bot/user/all/richmenu/{id}"))
        .iter()
        .map(|c| c.status.as_u16())
        .collect();
    assert_eq!(statuses, [502, 200], "setting a default twice does no harm");
}

#[tokio::test]
async fn the_webhook_endpoint_is_set_read_and_tested() {
    let (fake, client) = setup().await;
    let error = client.test_webhook_endpoint(None).await.unwrap_err();
    assert_eq!(
        (error.kind(), error.status()),
        (ErrorKind::Api, Some(StatusCode::BAD_REQUEST)),
        "nothing to test before an endpoint is set"
    );

    let url = "https://bot.example.com/line/webhook";
    client.set_webhook_endpoint(url).await.unwrap();
    assert_eq!(fake.webhook_endpoint().as_deref(), Some(url));
    let endpoint = client.webhook_endpoint().await.unwrap();
    assert_eq!((endpoint.endpoint.as_str(), endpoint.active), (url, true));
    let put = &fake.api().calls_to("/v2/bot/channel/webhook/endpoint")[0];
    assert_eq!(put.request.method, http::Method::PUT);
    assert_eq!(put.request.json(), serde_json::json!({ "endpoint": url }));

    let test = client.test_webhook_endpoint(None).await.unwrap();
    assert!(test.success);
    assert_eq!((test.status_code, test.reason.as_str()), (200, "OK"));
    let tested = client
        .test_webhook_endpoint(Some("https://staging.example.com/hook"))
        .await
        .unwrap();
    assert!(tested.success);
    let sent = fake.api().calls_to("/v2/bot/channel/webhook/test");
    assert_eq!(
        sent[2].request.json()["endpoint"],
        "https://staging.example.com/hook"
    );

    let calls = fake.api().call_count();
    for bad in [
        "http://bot.example.com/hook",
        "https://",
        &format!("https://{}", "a".repeat(500)),
    ] {
        let error = client.set_webhook_endpoint(bad).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{bad}");
    }
    assert_eq!(fake.api().call_count(), calls, "refused before sending");
}
