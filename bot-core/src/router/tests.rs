//! The router's tests.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::context::Shared;
use crate::error::Error;
use crate::event::{Command, Members, Other, Postback};
use crate::handler::HandlerExt;
use crate::state::MemoryStateStore;

type Log = Arc<Mutex<Vec<&'static str>>>;

/// A handler that records `name` when it runs.
fn mark(log: &Log, name: &'static str) -> impl Handler + use<> {
    let log = log.clone();
    move |_cx: Context, _event: Event| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(name);
            Ok::<(), Error>(())
        }
    }
}

fn context(event: &Event) -> Context {
    let shared = Arc::new(Shared {
        outbounds: Default::default(),
        app_state: Default::default(),
        clients: Default::default(),
        state_store: Arc::new(MemoryStateStore::new()),
        #[cfg(feature = "postgres")]
        db: None,
    });
    Context::new(shared, event, 1, CancellationToken::new())
}

/// Runs `event` through `router` and returns the routes that ran.
async fn dispatch(router: &Router, log: &Log, event: Event) -> Vec<&'static str> {
    log.lock().unwrap().clear();
    router.call(context(&event), event).await.unwrap();
    std::mem::take(&mut *log.lock().unwrap())
}

fn text(text: &str) -> Event {
    Event::text(Platform::TEST, "c", text)
}

fn command(name: &str) -> Event {
    Event::new(
        Platform::DISCORD,
        "c",
        EventKind::Command(Command {
            name: name.into(),
            options: Default::default(),
        }),
    )
}

fn postback(data: &str) -> Event {
    Event::new(
        Platform::LINE,
        "c",
        EventKind::Postback(Postback {
            data: data.into(),
            params: serde_json::Value::Null,
        }),
    )
}

fn other(name: &str) -> Event {
    Event::new(
        Platform::LINE,
        "c",
        EventKind::Other(Other { name: name.into() }),
    )
}

#[tokio::test]
async fn first_matching_route_wins_in_insertion_order() {
    let log = Log::default();
    let router = Router::new()
        .text_exact("hi", mark(&log, "exact"))
        .text_prefix("h", mark(&log, "prefix"))
        .text(mark(&log, "any"));
    assert_eq!(dispatch(&router, &log, text("hi")).await, ["exact"]);
    assert_eq!(dispatch(&router, &log, text("hello")).await, ["prefix"]);
    assert_eq!(dispatch(&router, &log, text("yo")).await, ["any"]);

    let reversed = Router::new()
        .text(mark(&log, "any"))
        .text_exact("hi", mark(&log, "exact"));
    assert_eq!(dispatch(&reversed, &log, text("hi")).await, ["any"]);
}

#[tokio::test]
async fn command_matches_command_events_and_slash_text() {
    let log = Log::default();
    let router = Router::new()
        .command("start", mark(&log, "start"))
        .command("/help", mark(&log, "help"))
        .text(mark(&log, "text"));
    assert_eq!(dispatch(&router, &log, command("start")).await, ["start"]);
    assert_eq!(dispatch(&router, &log, command("help")).await, ["help"]);
    assert_eq!(dispatch(&router, &log, text("/start")).await, ["start"]);
    assert_eq!(
        dispatch(&router, &log, text("  /start@my_bot now")).await,
        ["start"]
    );
    assert_eq!(dispatch(&router, &log, text("/help me")).await, ["help"]);
    // Not the same command, not a command at all, or not at the start.
    assert_eq!(dispatch(&router, &log, text("/starts")).await, ["text"]);
    assert_eq!(dispatch(&router, &log, text("/Start")).await, ["text"]);
    assert_eq!(dispatch(&router, &log, text("start")).await, ["text"]);
    assert_eq!(dispatch(&router, &log, text("say /start")).await, ["text"]);
    // A command event that no route names does not fall into the text route.
    assert!(dispatch(&router, &log, command("other")).await.is_empty());
}

#[test]
fn parse_command_splits_name_and_arguments() {
    assert_eq!(parse_command("/start"), Some(("start", "")));
    assert_eq!(parse_command("/start   "), Some(("start", "")));
    assert_eq!(parse_command("\t/start a  b "), Some(("start", "a  b")));
    assert_eq!(parse_command("/start@bot a\nb"), Some(("start", "a\nb")));
    assert_eq!(parse_command("/set_name-2 x"), Some(("set_name-2", "x")));
    assert_eq!(parse_command("/日本 x"), Some(("日本", "x")));
    assert_eq!(parse_command("/"), None);
    assert_eq!(parse_command("/ start"), None);
    assert_eq!(parse_command("/@bot"), None);
    assert_eq!(parse_command("/start@"), None);
    assert_eq!(parse_command("/a/b"), None);
    assert_eq!(parse_command("start"), None);
    assert_eq!(parse_command(""), None);
}

#[tokio::test]
async fn regex_matches_text_only() {
    let log = Log::default();
    let router = Router::new()
        .text_regex(Regex::new(r"^order #\d+$").unwrap(), mark(&log, "order"))
        .fallback(mark(&log, "fallback"));
    assert_eq!(dispatch(&router, &log, text("order #42")).await, ["order"]);
    assert_eq!(
        dispatch(&router, &log, text("order #42!")).await,
        ["fallback"]
    );
    assert_eq!(
        dispatch(&router, &log, postback("order #42")).await,
        ["fallback"]
    );
}

#[tokio::test]
async fn postback_exact_and_prefix() {
    let log = Log::default();
    let router = Router::new()
        .postback("menu", mark(&log, "menu"))
        .postback_prefix("vote:", mark(&log, "vote"))
        .text(mark(&log, "text"));
    assert_eq!(dispatch(&router, &log, postback("menu")).await, ["menu"]);
    assert_eq!(dispatch(&router, &log, postback("vote:3")).await, ["vote"]);
    assert!(dispatch(&router, &log, postback("menu2")).await.is_empty());
    // Text that looks like postback data is still text.
    assert_eq!(dispatch(&router, &log, text("menu")).await, ["text"]);
}

#[tokio::test]
async fn kind_matches_kind_names_and_other_names() {
    let log = Log::default();
    let router = Router::new()
        .kind("followed", mark(&log, "followed"))
        .kind("member_joined", mark(&log, "joined"))
        .kind("beacon", mark(&log, "beacon"));
    let followed = Event::new(Platform::LINE, "c", EventKind::Followed);
    let joined = Event::new(
        Platform::LINE,
        "c",
        EventKind::MemberJoined(Members::default()),
    );
    assert_eq!(dispatch(&router, &log, followed).await, ["followed"]);
    assert_eq!(dispatch(&router, &log, joined).await, ["joined"]);
    assert_eq!(dispatch(&router, &log, other("beacon")).await, ["beacon"]);
    assert!(dispatch(&router, &log, other("things")).await.is_empty());
    assert!(dispatch(&router, &log, text("followed")).await.is_empty());
}

#[tokio::test]
async fn platform_and_predicate_routes() {
    let log = Log::default();
    let router = Router::new()
        .platform(Platform::LINE, mark(&log, "line"))
        .route(
            |e: &Event| e.conversation.as_str() == "vip",
            mark(&log, "vip"),
        );
    assert_eq!(dispatch(&router, &log, postback("x")).await, ["line"]);
    assert_eq!(dispatch(&router, &log, other("beacon")).await, ["line"]);
    assert!(dispatch(&router, &log, text("x")).await.is_empty());
    let vip = Event::text(Platform::DISCORD, "vip", "x");
    assert_eq!(dispatch(&router, &log, vip).await, ["vip"]);
}

#[tokio::test]
async fn fallback_runs_only_when_nothing_matched() {
    let log = Log::default();
    let router = Router::new()
        .text_exact("a", mark(&log, "a"))
        .fallback(mark(&log, "first"))
        .fallback(mark(&log, "fallback"));
    assert_eq!(dispatch(&router, &log, text("a")).await, ["a"]);
    assert_eq!(dispatch(&router, &log, text("b")).await, ["fallback"]);
    assert_eq!(dispatch(&router, &log, command("x")).await, ["fallback"]);

    let without = Router::new().text_exact("a", mark(&log, "a"));
    assert!(dispatch(&without, &log, text("b")).await.is_empty());
}

#[tokio::test]
async fn route_errors_reach_the_caller() {
    async fn failing(_cx: Context, _event: Event) -> Result<(), Error> {
        Err(Error::new(crate::ErrorKind::Other, "boom"))
    }
    let router = Router::new().text(failing);
    let event = text("x");
    let err = router.call(context(&event), event).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
}

#[tokio::test]
async fn nested_routers_dispatch_within() {
    let log = Log::default();
    let line = Router::new()
        .text(mark(&log, "line text"))
        .fallback(mark(&log, "line other"));
    let router = Router::new()
        .platform(Platform::LINE, line)
        .text(mark(&log, "text"));
    let line_text = Event::text(Platform::LINE, "c", "x");
    assert_eq!(dispatch(&router, &log, line_text).await, ["line text"]);
    assert_eq!(dispatch(&router, &log, postback("x")).await, ["line other"]);
    assert_eq!(dispatch(&router, &log, text("x")).await, ["text"]);
}

#[test]
fn timeout_is_the_matched_routes() {
    let log = Log::default();
    let router = Router::new()
        .command(
            "report",
            mark(&log, "report").with_timeout(Duration::from_secs(600)),
        )
        .text(mark(&log, "text"))
        .fallback(mark(&log, "fallback").with_timeout(Duration::from_secs(2)));
    assert_eq!(
        router.timeout(&text("/report now")),
        Some(Duration::from_secs(600))
    );
    assert_eq!(
        router.timeout(&command("report")),
        Some(Duration::from_secs(600))
    );
    assert_eq!(router.timeout(&text("hello")), None);
    assert_eq!(router.timeout(&postback("x")), Some(Duration::from_secs(2)));
    let without = Router::new().text(mark(&log, "text"));
    assert_eq!(without.timeout(&postback("x")), None);
}

#[test]
fn debug_lists_the_routes() {
    let log = Log::default();
    let router = Router::new()
        .command("start", mark(&log, "x"))
        .text_regex(Regex::new("a+").unwrap(), mark(&log, "x"))
        .route(|_: &Event| true, mark(&log, "x"));
    let debug = format!("{router:?}");
    assert!(debug.contains(r#"Command("start")"#), "{debug}");
    assert!(debug.contains(r#"TextRegex("a+")"#), "{debug}");
    assert!(debug.contains("Predicate(..)"), "{debug}");
}

#[test]
fn router_is_send_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Router>();
}

#[tokio::test]
async fn text_match_lenient_takes_what_phone_keyboards_type() {
    let log = Log::default();
    let exact = Router::new()
        .text_exact("book", mark(&log, "book"))
        .text_prefix("order ", mark(&log, "order"))
        .fallback(mark(&log, "fallback"));
    // Exact by default: a capitalised or padded word misses.
    assert_eq!(dispatch(&exact, &log, text("Book")).await, ["fallback"]);
    assert_eq!(dispatch(&exact, &log, text("book")).await, ["book"]);

    // Set after the routes, it applies to them too.
    let lenient = exact.clone().text_match(TextMatch::LENIENT);
    for typed in ["Book", "BOOK ", " book", "ｂｏｏｋ", "Ｂｏｏｋ\u{3000}"] {
        assert_eq!(
            dispatch(&lenient, &log, text(typed)).await,
            ["book"],
            "{typed:?}"
        );
    }
    assert_eq!(dispatch(&lenient, &log, text("Order 42")).await, ["order"]);
    assert_eq!(dispatch(&lenient, &log, text("books")).await, ["fallback"]);
    // Routes added after it fold their text too.
    let later = Router::new()
        .text_match(TextMatch::LENIENT)
        .text_exact("  Café", mark(&log, "cafe"));
    assert_eq!(dispatch(&later, &log, text("CAFE\u{301}")).await, ["cafe"]);
    // Postback data stays exact.
    let postbacks = Router::new()
        .text_match(TextMatch::LENIENT)
        .postback("menu", mark(&log, "menu"));
    assert!(
        dispatch(&postbacks, &log, postback("Menu"))
            .await
            .is_empty()
    );
}

#[test]
fn regex_is_re_exported() {
    let regex: crate::regex::Regex = crate::regex::Regex::new("(?i)^book$").unwrap();
    let router = Router::new().text_regex(regex, |_cx: Context, _e: Event| async {
        Ok::<(), Error>(())
    });
    assert!(format!("{router:?}").contains("(?i)^book$"));
}
