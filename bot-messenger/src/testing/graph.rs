//! The fake Graph API's answers: the Send API, user profiles, the Messenger profile and the
//! page's webhook subscriptions, with Meta's rules and Graph error bodies.

use bot_core::testing::fake_api::{FakeRequest, FakeResponse, Fault};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::next_id;
use super::setup::Page;
use crate::client::{MESSENGER_PROFILE_PATH, SEND_PATH, SUBSCRIBED_APPS_PATH};
use crate::model::send::{
    GraphError, MAX_PAYLOAD_CHARS, MAX_QUICK_REPLIES, MAX_QUICK_REPLY_TITLE_CHARS, MAX_TEXT_CHARS,
};

/// "error_subcode", "fbtrace_id"}}` with `status`.
///
/// # Examples
///
/// ```
/// use bot_messenger::testing::graph_error;
/// use http::StatusCode;
///
/// // The next call is refused as Meta refuses a call over the page's rate limit.
/// let fault = graph_error(StatusCode::BAD_REQUEST, 613, None).times(1);
/// # let _ = fault;
/// ```
pub fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>) -> Fault {
    Fault::response(graph_response(
        status,
        code,
        subcode,
        &graph_message(code, subcode),
    ))
}

fn graph_message(code: i64, subcode: Option<i64>) -> String {
    let text = match (code, subcode) {
        (4, _) => "Application request limit reached",
        (613, _) => "Calls to this api have exceeded the rate limit.",
        (80_001 | 80_002 | 80_006, _) => {
            "There have been too many calls for this business use case. Wait a bit and try again."
        }
        (1200, _) => "Temporary send message failure. Please try again later",
        (2, _) => "An unexpected error has occurred. Please retry your request later.",
        (190, _) => "Invalid OAuth access token - Cannot parse access token",
        (100, Some(2_018_001)) => "No matching user found",
        (10, Some(2_018_278)) => {
            "This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview"
        }
        (551, _) => "This person isn't available right now.",
        _ => "Invalid parameter",
    };
    format!("(#{code}) {text}")
}

pub(super) fn graph_response(
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    message: &str,
) -> FakeResponse {
    let error = GraphError {
        message: message.to_owned(),
        error_type: if code == 190 || code == 100 || code == 10 {
            "OAuthException".to_owned()
        } else {
            "GraphMethodException".to_owned()
        },
        code,
        error_subcode: subcode,
        fbtrace_id: Some(format!("Fake{:012}", next_id())),
    };
    FakeResponse::json(status, &error.to_body())
}

pub(super) fn invalid(message: &str) -> FakeResponse {
    graph_response(
        StatusCode::BAD_REQUEST,
        100,
        None,
        &format!("(#100) {message}"),
    )
}

/// The fake's answer to `request`, for a page whose access token is `token`.
pub(super) fn answer(token: &str, page: &Page, request: &FakeRequest) -> FakeResponse {
    let presented = request
        .bearer()
        .or_else(|| request.query_param("access_token"));
    if presented != Some(token) {
        return graph_response(
            StatusCode::BAD_REQUEST,
            190,
            None,
            &graph_message(190, None),
        );
    }
    match (&request.method, request.path.as_str()) {
        (&Method::POST, SEND_PATH) => send(&request.json()),
        (method, MESSENGER_PROFILE_PATH) => page.messenger_profile(method, request),
        (method, SUBSCRIBED_APPS_PATH) => page.subscribed_apps(method, request),
        (&Method::GET, path) if path.len() > 1 && !path[1..].contains('/') => {
            let psid = &path[1..];
            FakeResponse::json(
                StatusCode::OK,
                &json!({
                    "first_name": "User",
                    "last_name": psid,
                    "profile_pic": format!("https://fake.invalid/{psid}.jpg"),
                    "id": psid,
                }),
            )
        }
        _ => graph_response(
            StatusCode::NOT_FOUND,
            100,
            None,
            "(#100) Unknown path components",
        ),
    }
}

fn send(body: &Value) -> FakeResponse {
    let Some(recipient) = body.get("recipient").filter(|r| r.is_object()) else {
        return invalid("The parameter recipient is required");
    };
    let recipient_id = recipient
        .get("id")
        .or_else(|| recipient.get("user_ref"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty());
    let Some(recipient_id) = recipient_id else {
        return invalid("param recipient must have an id or a user_ref");
    };
    match (body.get("message"), body.get("sender_action")) {
        (Some(_), Some(_)) => invalid("sender_action must be sent alone, without a message"),
        (None, None) => invalid("Must send either message or sender_action"),
        (None, Some(action)) => match action.as_str() {
            Some("typing_on" | "typing_off" | "mark_seen") => {
                FakeResponse::json(StatusCode::OK, &json!({ "recipient_id": recipient_id }))
            }
            _ => invalid("param sender_action must be one of {typing_on, typing_off, mark_seen}"),
        },
        (Some(message), None) => match check_message(body, message) {
            Ok(()) => FakeResponse::json(
                StatusCode::OK,
                &json!({
                    "recipient_id": recipient_id,
                    "message_id": format!("m_fake{:016}", next_id()),
                }),
            ),
            Err(refusal) => *refusal,
        },
    }
}

fn check_message(body: &Value, message: &Value) -> Result<(), Box<FakeResponse>> {
    let refuse = |m: &str| Err(Box::new(invalid(m)));
    match body.get("messaging_type").and_then(Value::as_str) {
        Some("RESPONSE" | "UPDATE") => {}
        Some("MESSAGE_TAG") if body.get("tag").and_then(Value::as_str).is_some() => {}
        Some("MESSAGE_TAG") => return refuse("param tag is required for MESSAGE_TAG"),
        _ => return refuse("param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}"),
    }
    match (message.get("text"), message.get("attachment")) {
        (Some(_), Some(_)) => return refuse("message cannot have both text and attachment"),
        (None, None) => return refuse("message must have text or attachment"),
        (Some(text), None) => {
            let Some(text) = text.as_str().filter(|t| !t.is_empty()) else {
                return refuse("param message[text] must be a non-empty UTF-8 encoded string");
            };
            if text.chars().count() > MAX_TEXT_CHARS {
                return refuse(
                    "param message[text] must be UTF-8 encoded with 2000 or fewer characters",
                );
            }
        }
        (None, Some(attachment)) => {
            if attachment.get("type").and_then(Value::as_str).is_none() {
                return refuse("param message[attachment][type] is required");
            }
        }
    }
    if let Some(quick_replies) = message.get("quick_replies") {
        let Some(items) = quick_replies.as_array() else {
            return refuse("param message[quick_replies] must be an array");
        };
        if items.len() > MAX_QUICK_REPLIES {
            return refuse("param message[quick_replies] must have at most 13 items");
        }
        for item in items {
            match item.get("content_type").and_then(Value::as_str) {
                Some("text") => {
                    let title = item.get("title").and_then(Value::as_str).unwrap_or("");
                    let payload = item.get("payload").and_then(Value::as_str).unwrap_or("");
                    if title.is_empty() || title.chars().count() > MAX_QUICK_REPLY_TITLE_CHARS {
                        return refuse("param title must be 1 to 20 characters");
                    }
                    if payload.is_empty() || payload.chars().count() > MAX_PAYLOAD_CHARS {
                        return refuse("param payload must be 1 to 1000 characters");
                    }
                }
                Some("user_email" | "user_phone_number") => {}
                _ => {
                    return refuse(
                        "param content_type must be text, user_email or user_phone_number",
                    );
                }
            }
        }
    }
    Ok(())
}
