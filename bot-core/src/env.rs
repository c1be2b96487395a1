//! Configuration from environment variables, with errors a person can read: each names the
//! variable and says what is wrong with its value, and a variable whose name is one or two
//! letters away from one a component reads is reported instead of silently ignored.
//!
//! The adapters' `from_env` constructors read their variables with these functions, and so can
//! a bot's own `main`:
//!
//! ```
//! use std::net::SocketAddr;
//!
//! # fn main() -> Result<(), bot_core::Error> {
//! let addr: SocketAddr = bot_core::env::parse_or("BOT_ADDR", "an address such as 127.0.0.1:8080", || {
//!     SocketAddr::from(([127, 0, 0, 1], 8080))
//! })?;
//! # let _ = addr; Ok(()) }
//! ```

use std::str::FromStr;

use crate::error::Error;

/// `BOT_ADDR`: the address the examples and the templates' bots serve on.
pub const ADDR_ENV: &str = "BOT_ADDR";
/// `BOT_PROCESSES`: how many processes share one database, for the connection check at start-up.
pub const PROCESSES_ENV: &str = "BOT_PROCESSES";

/// The value of `name`: `None` when it is unset, blank or not UTF-8; trimmed otherwise (values
/// read from secret files end in a newline).
pub fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// `name` parsed as a `T`, `None` when it is unset or blank.
///
/// `expected` says what the value should be, as the message's end: "BOT_PROCESSES must be a
/// whole number above zero, not \"two\"".
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] naming the variable, what it should be and what it is, when the
/// value does not parse.
pub fn parse<T: FromStr>(name: &str, expected: &str) -> Result<Option<T>, Error> {
    parse_value(name, var(name), expected)
}

/// As [`parse`], with `default()` when the variable is unset or blank.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_or<T: FromStr>(
    name: &str,
    expected: &str,
    default: impl FnOnce() -> T,
) -> Result<T, Error> {
    Ok(parse(name, expected)?.unwrap_or_else(default))
}

/// `value` (of the variable `name`) parsed as a `T`; the parsing half of [`parse`], for values
/// that do not come from the process environment.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_value<T: FromStr>(
    name: &str,
    value: Option<String>,
    expected: &str,
) -> Result<Option<T>, Error> {
    match value {
        None => Ok(None),
        Some(value) => match value.trim().parse() {
            Ok(parsed) => Ok(Some(parsed)),
            Err(_) => Err(invalid(name, expected, &value)),
        },
    }
}

/// The error of a variable whose value is not what it should be:
/// "{name} must be {expected}, not {value:?}".
pub fn invalid(name: &str, expected: &str, value: &str) -> Error {
    Error::config(format!("{name} must be {expected}, not {value:?}"))
}

/// `BOT_PROCESSES`: how many processes share the database (1 when unset).
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] when it is not a whole number above zero.
pub fn processes() -> Result<usize, Error> {
    processes_from(var(PROCESSES_ENV))
}

fn processes_from(value: Option<String>) -> Result<usize, Error> {
    let processes = parse_value::<std::num::NonZeroUsize>(
        PROCESSES_ENV,
        value,
        "a whole number of processes above zero",
    )?;
    Ok(processes.map_or(1, std::num::NonZeroUsize::get))
}

/// Checks the names of the process's environment variables against `known` (see
/// [`check_names`]).
///
/// # Errors
///
/// As [`check_names`].
pub fn check_spelling(component: &str, known: &[&str]) -> Result<(), Error> {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    check_names(component, known, names)
}

/// Reports a name among `names` that is close to, but not, one of the `known` variables that
/// `component` reads: `LINE_CHANEL_SECRET` beside `LINE_CHANNEL_SECRET` would otherwise be
/// ignored without a word, and the platform left unconfigured.
///
/// A `#` in a known name stands for a number (`LINE_CHANNEL_#_SECRET`). Names far from every
/// known one (your own variables) pass; "close" is one letter away, or two for names of 16
/// letters or more, ignoring case.
///
/// # Errors
///
/// [`crate::ErrorKind::Config`] naming each misspelt variable and the name it was probably meant
/// to be.
pub fn check_names(
    component: &str,
    known: &[&str],
    names: impl IntoIterator<Item = String>,
) -> Result<(), Error> {
    let mut misspelt: Vec<(String, String)> = names
        .into_iter()
        .filter_map(|name| suggestion(known, &name).map(|meant| (name, meant)))
        .collect();
    misspelt.sort_unstable();
    Err(Error::config(match misspelt.as_slice() {
        [] => return Ok(()),
        [(name, meant)] => format!(
            "{component}: {name} is not a variable {component} reads; did you mean {meant}? \
             Rename or unset it"
        ),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|(name, meant)| format!("{name} (did you mean {meant}?)"))
                .collect();
            format!(
                "{component}: {} are not variables {component} reads; rename or unset them",
                names.join(", ")
            )
        }
    }))
}

/// The known name `name` was probably meant to be, when it is close to one but none exactly.
fn suggestion(known: &[&str], name: &str) -> Option<String> {
    let (shape, number) = numbers_as_hash(name);
    if known.contains(&shape.as_str()) {
        return None;
    }
    let upper = shape.to_ascii_uppercase();
    known.iter().find_map(|candidate| {
        let allowed = if candidate.len() >= 16 { 2 } else { 1 };
        let distance = strsim::levenshtein(&upper, candidate);
        (distance <= allowed).then(|| match &number {
            Some(n) => candidate.replacen('#', n, 1),
            None => (*candidate).to_owned(),
        })
    })
}

/// `name` with its first run of digits replaced by `#`, and the digits.
fn numbers_as_hash(name: &str) -> (String, Option<String>) {
    let Some(start) = name.find(|c: char| c.is_ascii_digit()) else {
        return (name.to_owned(), None);
    };
    let end = name[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(name.len(), |len| start + len);
    let shape = format!("{}#{}", &name[..start], &name[end..]);
    (shape, Some(name[start..end].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const KNOWN: &[&str] = &[
        "LINE_CHANNEL_SECRET",
        "LINE_CHANNEL_ACCESS_TOKEN",
        "LINE_API_BASE",
        "LINE_CHANNEL_#_SECRET",
    ];

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_misspelt_variable_next_to_correct_ones_is_named_with_the_right_name() {
        let error = check_names(
            "line",
            KNOWN,
            names(&["LINE_CHANEL_SECRET", "LINE_CHANNEL_ACCESS_TOKEN", "PATH"]),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert_eq!(
            error.to_string(),
            "line: LINE_CHANEL_SECRET is not a variable line reads; \
             did you mean LINE_CHANNEL_SECRET? Rename or unset it"
        );
    }

    #[test]
    fn numbered_and_lowercase_misspellings_are_found_and_the_number_kept() {
        let error = check_names(
            "line",
            KNOWN,
            names(&["LINE_CHANNEL_12_SECRT", "line_api_base"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "line: LINE_CHANNEL_12_SECRT (did you mean LINE_CHANNEL_12_SECRET?), \
                 line_api_base (did you mean LINE_API_BASE?) are not variables line reads"
            ),
            "{error}"
        );
    }

    #[test]
    fn known_names_and_names_far_from_them_pass() {
        let fine = names(&[
            "LINE_CHANNEL_SECRET",
            "LINE_CHANNEL_3_SECRET",
            "LINE_NOTIFY_TOKEN",
            "LINE_API_BASE_2",
            "HOME",
        ]);
        check_names("line", KNOWN, fine).unwrap();
    }

    #[test]
    fn a_value_that_does_not_parse_is_named_with_what_it_should_be() {
        let error = parse_value::<u64>("WORK_MS", Some("2s".into()), "a number of milliseconds")
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert_eq!(
            error.to_string(),
            "WORK_MS must be a number of milliseconds, not \"2s\""
        );
        let parsed = parse_value::<u64>("WORK_MS", Some(" 25\n".into()), "a number").unwrap();
        assert_eq!(parsed, Some(25));
        assert_eq!(
            parse_value::<u64>("WORK_MS", None, "a number").unwrap(),
            None
        );
    }

    #[test]
    fn bot_processes_rejects_what_it_cannot_parse_and_zero() {
        assert_eq!(processes_from(None).unwrap(), 1);
        assert_eq!(processes_from(Some("3".into())).unwrap(), 3);
        for bad in ["two", "0", "-1", "1.5"] {
            let error = processes_from(Some(bad.into())).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "BOT_PROCESSES must be a whole number of processes above zero, not {bad:?}"
                )
            );
        }
    }
}
