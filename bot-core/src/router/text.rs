//! [`TextMatch`]: how a router compares message text with the text its routes name.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// How text routes ([`super::Router::text_exact`], [`super::Router::text_prefix`]) and dialog
/// answers compare a message's text with the text they name.
///
/// Each option folds both sides the same way before they are compared:
///
/// - `trim`: white space around the text is ignored (`" book "` is `"book"`);
/// - `ignore_case`: letters are compared by their Unicode lower case (`"Book"`, `"BOOK"` and
///   `"book"` are one; `"ÉTÉ"` is `"été"`);
/// - `normalize_unicode`: the text is put in Unicode normalisation form KC first, so that
///   full-width letters typed on Japanese or Chinese keyboards (`"ｂｏｏｋ"`), ligatures and the
///   two spellings of accented letters (precomposed `é`, or `e` and a combining accent) match.
///
/// [`TextMatch::EXACT`] (the default) compares the text as it is; [`TextMatch::LENIENT`] applies
/// all three, which is what people typing on phones expect.
///
/// # Examples
///
/// ```
/// use bot_core::router::TextMatch;
///
/// assert!(TextMatch::LENIENT.matches("book", " Ｂｏｏｋ\n"));
/// assert!(!TextMatch::EXACT.matches("book", "Book"));
/// assert!(TextMatch::EXACT.ignore_case(true).matches("book", "Book"));
/// assert!(TextMatch::LENIENT.starts_with("order", "Order #42"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TextMatch {
    trim: bool,
    ignore_case: bool,
    normalize_unicode: bool,
}

impl TextMatch {
    /// Text compared as it is, byte for byte.
    pub const EXACT: Self = Self {
        trim: false,
        ignore_case: false,
        normalize_unicode: false,
    };

    /// Trimmed, case-insensitive and Unicode-normalised (NFKC).
    pub const LENIENT: Self = Self {
        trim: true,
        ignore_case: true,
        normalize_unicode: true,
    };

    /// Whether white space around the text is ignored.
    #[must_use]
    pub const fn trim(mut self, trim: bool) -> Self {
        self.trim = trim;
        self
    }

    /// Whether letters are compared by their Unicode lower case.
    #[must_use]
    pub const fn ignore_case(mut self, ignore_case: bool) -> Self {
        self.ignore_case = ignore_case;
        self
    }

    /// Whether text is put in Unicode normalisation form KC before it is compared.
    #[must_use]
    pub const fn normalize_unicode(mut self, normalize: bool) -> Self {
        self.normalize_unicode = normalize;
        self
    }

    /// `text` folded by these options: what is compared. Borrowed when folding changes nothing.
    pub fn fold<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut folded = Cow::Borrowed(text);
        if self.normalize_unicode && is_nfkc_quick(folded.chars()) != IsNormalized::Yes {
            folded = Cow::Owned(folded.nfkc().collect());
        }
        if self.ignore_case && folded.chars().any(char::is_uppercase) {
            folded = Cow::Owned(folded.to_lowercase());
        }
        if self.trim {
            folded = match folded {
                Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
                Cow::Owned(text) if text.trim().len() == text.len() => Cow::Owned(text),
                Cow::Owned(text) => Cow::Owned(text.trim().to_owned()),
            };
        }
        folded
    }

    /// Whether `text`, folded, equals `expected`, folded.
    pub fn matches(&self, expected: &str, text: &str) -> bool {
        self.fold(text) == self.fold(expected)
    }

    /// Whether `text`, folded, starts with `prefix`, folded.
    pub fn starts_with(&self, prefix: &str, text: &str) -> bool {
        self.fold(text).starts_with(&*self.fold(prefix))
    }
}

/// A route's text with its folded form, computed once.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    /// The text as the route named it.
    pub(super) given: String,
    /// `given` folded by the router's [`TextMatch`].
    pub(super) folded: String,
}

impl Pattern {
    pub(super) fn new(given: String, options: TextMatch) -> Self {
        let folded = options.fold(&given).into_owned();
        Self { given, folded }
    }

    /// Folds `given` again, for other options.
    pub(super) fn refold(&mut self, options: TextMatch) {
        self.folded = options.fold(&self.given).into_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_compares_bytes() {
        assert!(TextMatch::EXACT.matches("book", "book"));
        assert!(!TextMatch::EXACT.matches("book", "Book"));
        assert!(!TextMatch::EXACT.matches("book", " book"));
        assert!(!TextMatch::EXACT.matches("book", "ｂｏｏｋ"));
        assert!(matches!(
            TextMatch::EXACT.fold("Book "),
            Cow::Borrowed("Book ")
        ));
    }

    #[test]
    fn each_option_alone() {
        let trim = TextMatch::EXACT.trim(true);
        assert!(trim.matches("book", "\t book \n"));
        assert!(!trim.matches("book", "Book"));
        let case = TextMatch::EXACT.ignore_case(true);
        assert!(case.matches("book", "BoOK"));
        assert!(case.matches("été", "ÉTÉ"));
        assert!(!case.matches("book", " book"));
        let nfkc = TextMatch::EXACT.normalize_unicode(true);
        assert!(nfkc.matches("book", "ｂｏｏｋ"));
        // Precomposed é against e + combining acute accent.
        assert!(nfkc.matches("caf\u{e9}", "cafe\u{301}"));
        assert!(!nfkc.matches("book", "Book"));
    }

    #[test]
    fn lenient_applies_all_three() {
        assert!(TextMatch::LENIENT.matches("Book", "  ＢＯＯＫ\u{3000}"));
        assert!(TextMatch::LENIENT.matches("café", "CAFE\u{301}"));
        assert!(TextMatch::LENIENT.starts_with("order ", " Order #1"));
        assert!(!TextMatch::LENIENT.matches("book", "books"));
        // Nothing to change: nothing allocated.
        assert!(matches!(
            TextMatch::LENIENT.fold(" book"),
            Cow::Borrowed("book")
        ));
    }
}
