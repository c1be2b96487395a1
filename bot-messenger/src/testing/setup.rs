//! The fake page's setup: its Messenger profile (`/me/messenger_profile`) and the apps
//! subscribed to its webhooks (`/me/subscribed_apps`), kept between calls and checked as Meta
//! checks them.

use std::sync::Mutex;

use bot_core::testing::fake_api::{FakeRequest, FakeResponse};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::graph::{graph_response, invalid};
use crate::model::profile::{MessengerProfile, ProfileField};
use crate::model::subscription::WebhookField;

/// The fake app's id, as `GET /me/subscribed_apps` names it.
pub const FAKE_APP_ID: &str = "1517776481860111";

/// Page webhook fields Meta accepts beyond the ones the adapter parses.
const OTHER_PAGE_FIELDS: [&str; 3] = ["feed", "message_edits", "messaging_policy_enforcement"];

/// What the fake page holds between calls.
#[derive(Debug, Default)]
pub(super) struct Page {
    /// The Messenger profile's properties, as set.
    profile: Mutex<Map<String, Value>>,
    /// The fields the app is subscribed to, if it is.
    subscribed: Mutex<Option<Vec<String>>>,
}

impl Page {
    /// The Messenger profile's properties, as set.
    pub(super) fn profile(&self) -> Map<String, Value> {
        self.profile
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The fields the app is subscribed to, if it is.
    pub(super) fn subscribed_fields(&self) -> Option<Vec<String>> {
        self.subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `POST` sets properties, `GET ?fields=` reads them, `DELETE {"fields"}` removes them.
    pub(super) fn messenger_profile(&self, method: &Method, request: &FakeRequest) -> FakeResponse {
        let mut stored = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        match *method {
            Method::POST => {
                let body = request.json();
                let Some(properties) = body.as_object().filter(|o| !o.is_empty()) else {
                    return invalid(
                        "Requires one of the params: get_started, greeting, persistent_menu, ice_breakers, whitelisted_domains",
                    );
                };
                let profile: MessengerProfile = match serde_json::from_value(body.clone()) {
                    Ok(profile) => profile,
                    Err(e) => return invalid(&format!("Invalid profile: {e}")),
                };
                if let Some(problem) = profile.problem() {
                    return invalid(&problem);
                }
                let has_get_started =
                    profile.get_started.is_some() || stored.contains_key("get_started");
                if profile.persistent_menu.is_some() && !has_get_started {
                    return invalid(
                        "You must set a Get Started button if you also wish to use persistent menu.",
                    );
                }
                for (key, value) in properties {
                    stored.insert(key.clone(), value.clone());
                }
                success()
            }
            Method::GET => {
                let Some(fields) = request.query_param("fields").filter(|f| !f.is_empty()) else {
                    return invalid("The parameter fields is required");
                };
                let found: Map<String, Value> = fields
                    .split(',')
                    .filter_map(|f| Some((f.to_owned(), stored.get(f)?.clone())))
                    .collect();
                let data = if found.is_empty() {
                    vec![]
                } else {
                    vec![Value::Object(found)]
                };
                FakeResponse::json(StatusCode::OK, &json!({ "data": data }))
            }
            Method::DELETE => {
                let body = request.json();
                let Some(fields) = body["fields"].as_array().filter(|f| !f.is_empty()) else {
                    return invalid("The parameter fields is required");
                };
                for field in fields {
                    let Some(name) = field.as_str() else {
                        return invalid("param fields must be an array of strings");
                    };
                    if let ProfileField::Other(name) = ProfileField::from(name)
                        && !stored.contains_key(&name)
                        && name != "whitelisted_domains"
                    {
                        return invalid(&format!("Unknown field {name}"));
                    }
                    stored.remove(name);
                }
                success()
            }
            _ => unsupported(),
        }
    }

    /// `POST ?subscribed_fields=` subscribes the app, `GET` lists it, `DELETE` unsubscribes it.
    pub(super) fn subscribed_apps(&self, method: &Method, request: &FakeRequest) -> FakeResponse {
        let mut subscribed = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
        match *method {
            Method::POST => {
                let Some(fields) = request
                    .query_param("subscribed_fields")
                    .filter(|f| !f.is_empty())
                else {
                    return invalid("The parameter subscribed_fields is required");
                };
                let fields: Vec<String> = fields.split(',').map(str::to_owned).collect();
                if let Some(bad) = fields.iter().find(|f| !known_page_field(f)) {
                    return invalid(&format!(
                        "Param subscribed_fields must be one of the page webhook fields, got {bad}"
                    ));
                }
                *subscribed = Some(fields);
                FakeResponse::json(StatusCode::OK, &json!({ "success": true }))
            }
            Method::GET => {
                let data: Vec<Value> = subscribed
                    .iter()
                    .map(|fields| {
                        json!({
                            "category": "Business",
                            "link": "https://fake.invalid/app",
                            "name": "Fake app",
                            "id": FAKE_APP_ID,
                            "subscribed_fields": fields,
                        })
                    })
                    .collect();
                FakeResponse::json(StatusCode::OK, &json!({ "data": data }))
            }
            Method::DELETE => {
                *subscribed = None;
                FakeResponse::json(StatusCode::OK, &json!({ "success": true }))
            }
            _ => unsupported(),
        }
    }
}

fn known_page_field(field: &str) -> bool {
    !matches!(WebhookField::from(field.to_owned()), WebhookField::Other(_))
        || OTHER_PAGE_FIELDS.contains(&field)
}

fn success() -> FakeResponse {
    FakeResponse::json(StatusCode::OK, &json!({ "result": "success" }))
}

fn unsupported() -> FakeResponse {
    graph_response(
        StatusCode::BAD_REQUEST,
        100,
        None,
        "(#100) Unsupported request method",
    )
}
