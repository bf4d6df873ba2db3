//! [`overlay!`](crate::overlay): the type of a section of the runtime settings document, every
//! key optional, and how it is laid onto the start-up settings (the streamer uses it too).

/// Declares an overlay of `$target`: a struct of the listed keys, each `Option`al, refusing
/// unknown keys, with a JSON Schema (`schemars` attributes on a key give its range) and
/// `apply_to`, which sets every key present onto a `$target` (converted by `$convert`, e.g.
/// `Duration::from_secs` for a `_secs` key). Absent keys keep the start-up value.
#[macro_export]
macro_rules! overlay {
    (
        $(#[$outer:meta])*
        pub struct $name:ident => $target:ty {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $convert:expr ),* $(,)?
        }
    ) => {
        $(#[$outer])*
        #[derive(
            Debug, Clone, Default, PartialEq, ::serde::Serialize, ::serde::Deserialize,
            ::schemars::JsonSchema,
        )]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$meta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// Sets every key present onto `target`.
            pub fn apply_to(&self, target: &mut $target) {
                $(
                    if let Some(value) = self.$field.clone() {
                        target.$field = ($convert)(value);
                    }
                )*
            }
        }
    };
}
