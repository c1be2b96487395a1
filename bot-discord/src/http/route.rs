//! Route keys: Discord's rate-limit buckets are per route and top-level resource.

use http::Method;

/// A request's rate-limit identity: the route with ids replaced, and its major parameter.
///
/// Its `Debug` hides the webhook and interaction tokens the major parameter may carry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct RouteKey {
    /// `POST /channels/{id}/messages`, with minor ids as `:id`.
    pub(crate) route: String,
    /// The channel, guild or webhook (with its token) the bucket is scoped to.
    pub(crate) major: String,
    /// Whether the global limit applies (not to interaction responses and follow-ups).
    pub(crate) global: bool,
}

impl RouteKey {
    pub(crate) fn new(method: &Method, path: &str) -> Self {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut major = String::new();
        let mut route = format!("{method} ");
        let mut i = 0;
        while i < segments.len() {
            let segment = segments[i];
            route.push('/');
            let previous = i.checked_sub(1).map(|p| segments[p]);
            match previous {
                Some("channels" | "guilds") if major.is_empty() => {
                    major = segment.to_owned();
                    route.push_str(":major");
                }
                Some("webhooks") if major.is_empty() => {
                    // The webhook id and its token together.
                    let token = segments.get(i + 1).copied().unwrap_or_default();
                    major = format!("{segment}/{token}");
                    route.push_str(":major");
                    if segments.get(i + 1).is_some() {
                        route.push_str("/:token");
                        i += 1;
                    }
                }
                Some("interactions") => {
                    major = segment.to_owned();
                    route.push_str(":major/:token");
                    i += 1;
                }
                _ if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() => {
                    route.push_str(":id");
                }
                _ => route.push_str(segment),
            }
            i += 1;
        }
        let global = !(route.contains("/interactions/") || route.contains("/webhooks/"));
        Self {
            route,
            major,
            global,
        }
    }
}

impl std::fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A webhook's major is `id/token`: only the id is shown.
        let major = match self.major.split_once('/') {
            Some((id, _token)) => format!("{id}/[redacted]"),
            None => self.major.clone(),
        };
        f.debug_struct("RouteKey")
            .field("route", &self.route)
            .field("major", &major)
            .field("global", &self.global)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_webhook_tokens() {
        let key = RouteKey::new(&Method::POST, "/webhooks/42/very-secret-token");
        let shown = format!("{key:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(shown.contains("42/[redacted]"), "{shown}");
        let key = RouteKey::new(&Method::POST, "/interactions/5/secret-itoken/callback");
        assert!(!format!("{key:?}").contains("secret-itoken"));
    }

    #[test]
    fn routes_keep_their_major_parameter_and_hide_the_rest() {
        let a = RouteKey::new(&Method::POST, "/channels/111/messages");
        let b = RouteKey::new(&Method::POST, "/channels/222/messages");
        assert_eq!(a.route, b.route);
        assert_eq!((a.major.as_str(), b.major.as_str()), ("111", "222"));
        assert!(a.global);

        let edit = RouteKey::new(&Method::PATCH, "/channels/111/messages/999");
        assert_eq!(edit.route, "PATCH /channels/:major/messages/:id");

        let callback = RouteKey::new(&Method::POST, "/interactions/5/tok-en/callback");
        assert_eq!(callback.route, "POST /interactions/:major/:token/callback");
        assert!(
            !callback.global,
            "interaction responses are outside the global limit"
        );

        let followup = RouteKey::new(&Method::POST, "/webhooks/7/abc");
        assert_eq!(
            (followup.route.as_str(), followup.major.as_str()),
            ("POST /webhooks/:major/:token", "7/abc")
        );
        assert!(!followup.global);
    }
}
