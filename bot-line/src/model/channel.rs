//! The channel's settings the Messaging API reads and writes: its webhook endpoint.

use serde::{Deserialize, Serialize};

/// Longest webhook URL LINE takes, in characters.
pub const MAX_WEBHOOK_URL_CHARS: usize = 500;

/// The channel's webhook endpoint ([`crate::LineClient::webhook_endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WebhookEndpoint {
    /// The webhook URL.
    pub endpoint: String,
    /// Whether LINE sends webhooks to it ("Use webhook" in the console).
    pub active: bool,
}

/// What LINE saw when it sent a test webhook ([`crate::LineClient::test_webhook_endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WebhookTest {
    /// Whether the endpoint answered with a 2xx.
    #[serde(default)]
    pub success: bool,
    /// When the test was sent (ISO 8601, as LINE gives it).
    #[serde(default)]
    pub timestamp: String,
    /// The endpoint's HTTP status; zero or negative when no answer came.
    #[serde(default)]
    pub status_code: i32,
    /// Why it failed, or `OK`.
    #[serde(default)]
    pub reason: String,
    /// More on the answer (its status, or the error).
    #[serde(default)]
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoint_and_test_answers_read_as_line_documents_them() {
        let endpoint: WebhookEndpoint = serde_json::from_value(
            json!({"endpoint": "https://example.com/line/webhook", "active": true}),
        )
        .unwrap();
        assert_eq!(endpoint.endpoint, "https://example.com/line/webhook");
        assert!(endpoint.active);
        let test: WebhookTest = serde_json::from_value(json!({
            "success": false,
            "timestamp": "2020-09-30T05:38:20.031Z",
            "statusCode": 500,
            "reason": "ERROR_STATUS_CODE",
            "detail": "500"
        }))
        .unwrap();
        assert_eq!(
            (test.success, test.status_code, test.reason.as_str()),
            (false, 500, "ERROR_STATUS_CODE")
        );
    }
}
