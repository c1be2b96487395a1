//! The fake's answers to the calls a bot sets itself up with: rich menus and the webhook
//! endpoint, with LINE's rules (a menu has 1 to 20 areas, takes one image of at most 1 MB, and
//! shows only once it has it; a webhook URL is https).

use std::collections::HashMap;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{FakeLine, error, lock, next_id};
use bot_core::testing::fake_api::{FakeRequest, FakeResponse};

/// Rich menus and the webhook endpoint as the fake keeps them.
#[derive(Default)]
pub(super) struct Setup {
    /// Menus in the order they were made, each with its `richMenuId`.
    menus: Vec<Value>,
    /// Each menu's image: its content type and bytes.
    images: HashMap<String, (String, Bytes)>,
    default_menu: Option<String>,
    links: HashMap<String, String>,
    webhook_endpoint: Option<String>,
}

impl Setup {
    fn has_menu(&self, id: &str) -> bool {
        self.menus.iter().any(|m| m["richMenuId"] == id)
    }

    /// Why `id` may not be shown (it does not exist, or has no image yet), if it may not.
    fn not_showable(&self, id: &str) -> Option<FakeResponse> {
        if !self.has_menu(id) {
            Some(error(StatusCode::NOT_FOUND, "richmenu not found"))
        } else if !self.images.contains_key(id) {
            Some(error(
                StatusCode::BAD_REQUEST,
                "must upload richmenu image before applying it to user",
            ))
        } else {
            None
        }
    }
}

fn ok() -> FakeResponse {
    FakeResponse::json(StatusCode::OK, &json!({}))
}

/// The fake's answer to a setup call, or `None` when `request` is not one.
pub(super) fn answer(setup: &mut Setup, request: &FakeRequest) -> Option<FakeResponse> {
    let path = request.path.as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match (&request.method, segments.as_slice()) {
        (&Method::POST, ["v2", "bot", "richmenu"]) => create(setup, &request.json()),
        (&Method::GET, ["v2", "bot", "richmenu", "list"]) => {
            FakeResponse::json(StatusCode::OK, &json!({ "richmenus": setup.menus.clone() }))
        }
        (&Method::GET, ["v2", "bot", "richmenu", id]) => {
            match setup.menus.iter().find(|m| m["richMenuId"] == *id) {
                Some(menu) => FakeResponse::json(StatusCode::OK, menu),
                None => error(StatusCode::NOT_FOUND, "richmenu not found"),
            }
        }
        (&Method::DELETE, ["v2", "bot", "richmenu", id]) => {
            if !setup.has_menu(id) {
                return Some(error(StatusCode::NOT_FOUND, "richmenu not found"));
            }
            setup.menus.retain(|m| m["richMenuId"] != *id);
            setup.images.remove(*id);
            setup.links.retain(|_, linked| linked != id);
            if setup.default_menu.as_deref() == Some(*id) {
                setup.default_menu = None;
            }
            ok()
        }
        (&Method::POST, ["v2", "bot", "richmenu", id, "content"]) => upload(setup, id, request),
        (&Method::POST, ["v2", "bot", "user", "all", "richmenu", id]) => {
            setup.not_showable(id).unwrap_or_else(|| {
                setup.default_menu = Some((*id).to_owned());
                ok()
            })
        }
        (&Method::GET, ["v2", "bot", "user", "all", "richmenu"]) => match &setup.default_menu {
            Some(id) => FakeResponse::json(StatusCode::OK, &json!({ "richMenuId": id })),
            None => error(StatusCode::NOT_FOUND, "no default richmenu"),
        },
        (&Method::DELETE, ["v2", "bot", "user", "all", "richmenu"]) => {
            setup.default_menu = None;
            ok()
        }
        (&Method::POST, ["v2", "bot", "user", user, "richmenu", id]) => {
            setup.not_showable(id).unwrap_or_else(|| {
                setup.links.insert((*user).to_owned(), (*id).to_owned());
                ok()
            })
        }
        (&Method::DELETE, ["v2", "bot", "user", user, "richmenu"]) => {
            setup.links.remove(*user);
            ok()
        }
        (&Method::PUT, ["v2", "bot", "channel", "webhook", "endpoint"]) => {
            match request.json()["endpoint"].as_str() {
                Some(url) if url.starts_with("https://") => {
                    setup.webhook_endpoint = Some(url.to_owned());
                    ok()
                }
                _ => error(StatusCode::BAD_REQUEST, "Invalid webhook endpoint URL"),
            }
        }
        (&Method::GET, ["v2", "bot", "channel", "webhook", "endpoint"]) => FakeResponse::json(
            StatusCode::OK,
            &json!({
                "endpoint": setup.webhook_endpoint.clone().unwrap_or_default(),
                "active": setup.webhook_endpoint.is_some(),
            }),
        ),
        (&Method::POST, ["v2", "bot", "channel", "webhook", "test"]) => {
            let body = request.json();
            let url = body["endpoint"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| setup.webhook_endpoint.clone());
            match url {
                // The fake reaches no URL: every test succeeds.
                Some(_) => FakeResponse::json(
                    StatusCode::OK,
                    &json!({"success": true, "timestamp": "2026-01-01T00:00:00.000Z",
                            "statusCode": 200, "reason": "OK", "detail": "200"}),
                ),
                None => error(
                    StatusCode::BAD_REQUEST,
                    "The webhook endpoint URL is not set",
                ),
            }
        }
        _ => return None,
    };
    Some(response)
}

fn create(setup: &mut Setup, body: &Value) -> FakeResponse {
    let areas = body["areas"].as_array().map_or(0, Vec::len);
    let chat_bar = body["chatBarText"].as_str().map(|t| t.chars().count());
    let invalid = |message: &str, property: &str| {
        FakeResponse::json(
            StatusCode::BAD_REQUEST,
            &json!({"message": "The request body has 1 error(s)",
                    "details": [{"message": message, "property": property}]}),
        )
    };
    if !(1..=20).contains(&areas) {
        return invalid("size must be between 1 and 20", "areas");
    }
    if chat_bar.is_none_or(|n| n > 14) || !body["size"].is_object() {
        return invalid("must be specified and valid", "chatBarText");
    }
    let id = format!("richmenu-{:032x}", next_id());
    let mut menu = body.clone();
    menu["richMenuId"] = json!(id);
    setup.menus.push(menu);
    FakeResponse::json(StatusCode::OK, &json!({ "richMenuId": id }))
}

fn upload(setup: &mut Setup, id: &str, request: &FakeRequest) -> FakeResponse {
    let content_type = request.header("content-type").unwrap_or_default();
    if !matches!(content_type, "image/jpeg" | "image/png") {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
    }
    if request.body.len() > 1024 * 1024 {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    if !setup.has_menu(id) {
        return error(StatusCode::NOT_FOUND, "richmenu not found");
    }
    if setup.images.contains_key(id) {
        return error(
            StatusCode::BAD_REQUEST,
            "An image has already been uploaded to the richmenu",
        );
    }
    setup.images.insert(
        id.to_owned(),
        (content_type.to_owned(), request.body.clone()),
    );
    ok()
}

impl FakeLine {
    /// The rich menus made so far, as LINE would return them (with `richMenuId`).
    pub fn rich_menus(&self) -> Vec<Value> {
        lock(&self.rules).setup.menus.clone()
    }

    /// The image uploaded for the rich menu `id`: its content type and bytes.
    pub fn rich_menu_image(&self, id: &str) -> Option<(String, Bytes)> {
        lock(&self.rules).setup.images.get(id).cloned()
    }

    /// The default rich menu's id, if set.
    pub fn default_rich_menu(&self) -> Option<String> {
        lock(&self.rules).setup.default_menu.clone()
    }

    /// The rich menu linked to `user_id`, if any.
    pub fn linked_rich_menu(&self, user_id: &str) -> Option<String> {
        lock(&self.rules).setup.links.get(user_id).cloned()
    }

    /// The webhook URL set, if any.
    pub fn webhook_endpoint(&self) -> Option<String> {
        lock(&self.rules).setup.webhook_endpoint.clone()
    }
}
