//! The channel's webhook endpoint: set it, read it, and have LINE send it a test webhook.

use bot_core::api::Call;
use http::Method;
use serde_json::json;

use super::builder::{LineClient, endpoint};
use crate::error::Error;
use crate::model::{MAX_WEBHOOK_URL_CHARS, WebhookEndpoint, WebhookTest};

const WEBHOOK_ENDPOINT_PATH: &str = "/v2/bot/channel/webhook/endpoint";
const WEBHOOK_TEST_PATH: &str = "/v2/bot/channel/webhook/test";

impl LineClient {
    /// Sets the channel's webhook URL: where LINE sends events (an `https://` URL of at most
    /// 500 characters). Whether LINE uses it is the console's "Use webhook" switch.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: bot_line::LineClient) -> Result<(), bot_line::Error> {
    /// client.set_webhook_endpoint("https://bot.example.com/line/webhook").await?;
    /// let test = client.test_webhook_endpoint(None).await?;
    /// assert!(test.success, "{}: {}", test.reason, test.detail);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for a URL that is not `https://` or is too long
    /// (nothing sent); otherwise as any call.
    pub async fn set_webhook_endpoint(&self, url: &str) -> Result<(), Error> {
        check_url(url)?;
        let call = Call::new(
            Method::PUT,
            endpoint::WEBHOOK_ENDPOINT,
            WEBHOOK_ENDPOINT_PATH,
        )
        .json(&json!({ "endpoint": url }))?;
        self.call(call, None).await.map(|_| ())
    }

    /// The channel's webhook URL and whether LINE sends webhooks to it.
    ///
    /// # Errors
    ///
    /// As any call.
    pub async fn webhook_endpoint(&self) -> Result<WebhookEndpoint, Error> {
        let call = Call::get(endpoint::WEBHOOK_ENDPOINT, WEBHOOK_ENDPOINT_PATH);
        Self::decode(&self.call(call, None).await?, "webhook endpoint")
    }

    /// Has LINE send a test webhook to `url`, or to the channel's webhook URL when `None`, and
    /// says how the endpoint answered. LINE allows 60 tests an hour.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for a URL that is not `https://` or is too long
    /// (nothing sent); otherwise as any call (a failing endpoint is not an error: see
    /// [`WebhookTest::success`]).
    pub async fn test_webhook_endpoint(&self, url: Option<&str>) -> Result<WebhookTest, Error> {
        let body = match url {
            Some(url) => {
                check_url(url)?;
                json!({ "endpoint": url })
            }
            None => json!({}),
        };
        // A test sent twice only tests twice.
        let call = Call::post(endpoint::WEBHOOK_TEST, WEBHOOK_TEST_PATH)
            .json(&body)?
            .idempotent(true);
        Self::decode(&self.call(call, None).await?, "webhook test result")
    }
}

fn check_url(url: &str) -> Result<(), Error> {
    if url.starts_with("https://")
        && url.len() > "https://".len()
        && url.chars().count() <= MAX_WEBHOOK_URL_CHARS
    {
        Ok(())
    } else {
        Err(Error::invalid_request(format!(
            "line: a webhook URL is https:// and at most {MAX_WEBHOOK_URL_CHARS} characters"
        )))
    }
}
