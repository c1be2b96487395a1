//! The crate's error: the client core's [`ApiError`](bot_core::api::ApiError), shared by every
//! adapter. REST calls, the gateway (with [`Error::close_code`] and the gateway kinds) and the
//! configuration all fail with it.

pub use bot_core::api::{ApiError as Error, ApiErrorKind as ErrorKind};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_gateway_errors_are_neither_retryable_nor_hidden() {
        let e = Error::new(ErrorKind::Authentication, "discord: authentication failed")
            .with_close_code(4004);
        assert!(e.is_fatal());
        assert!(!e.is_retryable());
        assert_eq!(e.close_code(), Some(4004));
        assert_eq!(
            e.to_string(),
            "discord: authentication failed (close code 4004)"
        );
        let core: bot_core::Error = Error::new(ErrorKind::Server, "x").into();
        assert!(core.is_retryable());
    }
}
