//! The page's setup calls against the fake Graph API: the Messenger profile (Get Started,
//! greeting, persistent menu, ice breakers) and the webhook subscription.

mod support;

use std::time::Duration;

use bot_core::testing::fake_api::{Fault, Latency};
use bot_messenger::model::GraphError;
use bot_messenger::model::profile::{
    Greeting, IceBreaker, IceBreakers, MenuItem, MessengerProfile, PersistentMenu, ProfileField,
};
use bot_messenger::model::subscription::WebhookField;
use bot_messenger::testing::{FAKE_APP_ID, FakeMessenger};
use bot_messenger::{ConfigureApi, ErrorKind, MessengerClient};
use http::{Method, StatusCode};
use serde_json::json;
use support::fast_retries;

fn client(fake: &FakeMessenger) -> MessengerClient {
    MessengerClient::builder(support::PAGE_TOKEN)
        .api_base(fake.url())
        .retry(fast_retries(3))
        .build()
        .unwrap()
}

fn welcome() -> MessengerProfile {
    MessengerProfile::new()
        .get_started("GET_STARTED")
        .greeting(vec![
            Greeting::new("default", "Hello {{user_first_name}}!"),
            Greeting::new("fr_FR", "Bonjour {{user_first_name}} !"),
        ])
        .persistent_menu(vec![
            PersistentMenu::new(
                "default",
                vec![
                    MenuItem::postback("Talk to an agent", "AGENT"),
                    MenuItem::web_url("Shop", "https://shop.example/"),
                ],
            )
            .composer_input_disabled(true),
        ])
        .ice_breakers(vec![IceBreakers::new(
            "default",
            vec![IceBreaker::new("Where are you?", "WHERE")],
        )])
}

#[tokio::test]
async fn the_messenger_profile_is_set_read_back_and_deleted() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake);

    client.set_messenger_profile(&welcome()).await.unwrap();

    let call = &fake.api().calls()[0].request;
    assert_eq!(
        (&call.method, call.path.as_str()),
        (&Method::POST, "/me/messenger_profile")
    );
    let stored = fake.messenger_profile();
    assert_eq!(stored["get_started"], json!({"payload": "GET_STARTED"}));
    assert_eq!(
        stored["persistent_menu"][0],
        json!({"locale": "default", "composer_input_disabled": true, "call_to_actions": [
            {"type": "postback", "title": "Talk to an agent", "payload": "AGENT"},
            {"type": "web_url", "title": "Shop", "url": "https://shop.example/"}
        ]})
    );
    assert_eq!(stored["greeting"][1]["locale"], "fr_FR");
    assert_eq!(
        stored["ice_breakers"][0]["call_to_actions"][0]["question"],
        "Where are you?"
    );

    let read = client
        .messenger_profile(&ProfileField::TYPED)
        .await
        .unwrap();
    assert_eq!(read, welcome());
    let asked = &fake.api().calls()[1].request;
    assert_eq!(
        asked.query_param("fields"),
        Some("get_started,greeting,persistent_menu,ice_breakers")
    );

    client
        .delete_messenger_profile(&[ProfileField::Greeting, ProfileField::IceBreakers])
        .await
        .unwrap();
    let delete = &fake.api().calls()[2].request;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(
        delete.json(),
        json!({"fields": ["greeting", "ice_breakers"]})
    );
    let left = client
        .messenger_profile(&ProfileField::TYPED)
        .await
        .unwrap();
    assert!(left.greeting.is_none() && left.ice_breakers.is_none());
    assert_eq!(left.get_started, welcome().get_started);

    // Nothing set: Meta answers an empty list, read as an empty profile.
    client
        .delete_messenger_profile(&[ProfileField::GetStarted, ProfileField::PersistentMenu])
        .await
        .unwrap();
    let empty = client
        .messenger_profile(&ProfileField::TYPED)
        .await
        .unwrap();
    assert_eq!(empty, MessengerProfile::new());
}

#[tokio::test]
async fn a_persistent_menu_without_get_started_is_refused_by_meta_with_its_graph_error() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake);
    let menu_only = MessengerProfile::new().persistent_menu(vec![PersistentMenu::new(
        "default",
        vec![MenuItem::postback("Help", "HELP")],
    )]);

    let error = client.set_messenger_profile(&menu_only).await.unwrap_err();

    assert_eq!((error.kind(), error.attempts()), (ErrorKind::Api, 1));
    assert_eq!(error.code(), Some(100));
    let graph = error.details::<GraphError>().unwrap();
    assert!(graph.message.contains("Get Started"), "{}", graph.message);
    assert!(fake.messenger_profile().is_empty());

    // Once the button is set, the same menu is taken.
    client
        .set_messenger_profile(&MessengerProfile::new().get_started("GO"))
        .await
        .unwrap();
    client.set_messenger_profile(&menu_only).await.unwrap();
    assert_eq!(
        fake.messenger_profile()["persistent_menu"][0]["locale"],
        "default"
    );
}

#[tokio::test]
async fn a_profile_meta_would_refuse_is_not_sent() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake);
    let no_default = MessengerProfile::new().greeting(vec![Greeting::new("en_US", "Hi")]);
    let long_title = MessengerProfile::new()
        .get_started("GO")
        .persistent_menu(vec![PersistentMenu::new(
            "default",
            vec![MenuItem::postback("x".repeat(31), "P")],
        )]);
    for profile in [MessengerProfile::new(), no_default, long_title] {
        let error = client.set_messenger_profile(&profile).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    }
    let bad_field = client
        .messenger_profile(&[ProfileField::Other("greeting&x=1".into())])
        .await
        .unwrap_err();
    assert_eq!(bad_field.kind(), ErrorKind::InvalidRequest);
    assert_eq!(fake.api().call_count(), 0);
}

#[tokio::test]
async fn setting_the_profile_is_retried_after_a_time_out_since_it_is_idempotent() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = MessengerClient::builder(support::PAGE_TOKEN)
        .api_base(fake.url())
        .retry(fast_retries(3))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    fake.api()
        .set_latency(Latency::Fixed(Duration::from_secs(2)));
    let error = client
        .set_messenger_profile(&MessengerProfile::new().get_started("GO"))
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.attempts()), (ErrorKind::Timeout, 3));
    assert!(!error.maybe_delivered(), "setting it twice does no harm");

    fake.api().set_latency(Latency::None);
    fake.api()
        .inject(Fault::status(StatusCode::INTERNAL_SERVER_ERROR));
    client
        .set_messenger_profile(&MessengerProfile::new().get_started("GO"))
        .await
        .unwrap();
    let statuses: Vec<u16> = fake
        .api()
        .calls_to("/me/messenger_profile")
        .iter()
        .map(|c| c.status.as_u16())
        .collect();
    assert_eq!(&statuses[statuses.len() - 2..], [500, 200]);
}

#[tokio::test]
async fn the_app_is_subscribed_to_the_page_webhooks_and_listed() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake);
    assert!(client.subscribed_apps().await.unwrap().is_empty());

    client.subscribe_app(&WebhookField::HANDLED).await.unwrap();

    let call = &fake.api().calls()[1].request;
    assert_eq!(
        (&call.method, call.path.as_str()),
        (&Method::POST, "/me/subscribed_apps")
    );
    let fields = call.query_param("subscribed_fields").unwrap();
    assert!(
        fields.starts_with("messages,messaging_postbacks,") && fields.ends_with(",standby"),
        "{fields}"
    );
    let apps = client.subscribed_apps().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, FAKE_APP_ID);
    assert_eq!(apps[0].subscribed_fields, WebhookField::HANDLED);

    client
        .subscribe_app(&[WebhookField::Messages, WebhookField::MessagingPostbacks])
        .await
        .unwrap();
    assert_eq!(
        fake.subscribed_fields().unwrap(),
        ["messages", "messaging_postbacks"],
        "a new subscription replaces the fields"
    );

    client.unsubscribe_app().await.unwrap();
    assert!(fake.subscribed_fields().is_none());
    assert!(client.subscribed_apps().await.unwrap().is_empty());
}

#[tokio::test]
async fn subscriptions_meta_refuses_are_typed_refusals() {
    let fake = FakeMessenger::start(support::PAGE_TOKEN).await.unwrap();
    let client = client(&fake);
    let unknown = client
        .subscribe_app(&[WebhookField::Other("not_a_field".into())])
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.kind(), unknown.code()),
        (ErrorKind::Api, Some(100))
    );
    assert!(fake.subscribed_fields().is_none());
    let none = client.subscribe_app(&[]).await.unwrap_err();
    assert_eq!(none.kind(), ErrorKind::InvalidRequest);

    let wrong_token = MessengerClient::builder("another-token")
        .api_base(fake.url())
        .build()
        .unwrap();
    let error = wrong_token.subscribed_apps().await.unwrap_err();
    assert_eq!(
        (error.kind(), error.code()),
        (ErrorKind::Authentication, Some(190))
    );
    assert_eq!(fake.api().call_count(), 2);
}
