//! [`setters!`](crate::setters): the builder setters of the message models, written once.

/// Writes builder setters (`#[must_use]`, taking and returning `self`), one per line:
///
/// - `name: set T;` sets `self.name = Some(value)`;
/// - `name: into T;` takes `impl Into<T>` and sets `self.name = Some(value.into())`;
/// - `name: push T;` / `name: push_into T;` pushes onto `self.name`;
/// - `name => field: ...;` the same on a field named otherwise (`button => buttons: push Button`).
///
/// The doc comment before each line is the setter's.
///
/// # Examples
///
/// ```
/// #[derive(Default)]
/// pub struct Note {
///     title: Option<String>,
///     tags: Vec<String>,
/// }
///
/// impl Note {
///     bot_core::setters! {
///         /// Sets the title.
///         title: into String;
///         /// Adds a tag.
///         tag => tags: push_into String;
///     }
/// }
///
/// let note = Note::default().title("groceries").tag("home");
/// assert_eq!(note.title.as_deref(), Some("groceries"));
/// assert_eq!(note.tags, ["home"]);
/// ```
#[macro_export]
macro_rules! setters {
    () => {};
    ($(#[$doc:meta])* $name:ident => $field:ident: set $ty:ty; $($rest:tt)*) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$field = Some(value);
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* $name:ident => $field:ident: into $ty:ty; $($rest:tt)*) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$field = Some(value.into());
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* $name:ident => $field:ident: push $ty:ty; $($rest:tt)*) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$field.push(value);
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* $name:ident => $field:ident: push_into $ty:ty; $($rest:tt)*) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$field.push(value.into());
            self
        }
        $crate::setters!($($rest)*);
    };
    ($(#[$doc:meta])* $name:ident: $kind:ident $ty:ty; $($rest:tt)*) => {
        $crate::setters!($(#[$doc])* $name => $name: $kind $ty; $($rest)*);
    };
}
