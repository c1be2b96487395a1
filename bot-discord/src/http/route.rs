//! Route keys: Discord's rate-limit buckets are per route and top-level resource.

use http::Method;

/// A request's rate-limit identity: the route with ids replaced, and its major parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
