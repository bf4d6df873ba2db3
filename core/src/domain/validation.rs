//! Input validation: every check names the field it rejects and says what was wrong.

use std::fmt;

/// An input that breaks a rule; `field` is the JSON path of the input (`symbols[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The offending field, as the client named it.
    pub field: String,
    /// What is wrong with it, in words a client developer can act on.
    pub problem: String,
}

impl ValidationError {
    /// A rejection of `field` because of `problem`.
    pub fn new(field: impl Into<String>, problem: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            problem: problem.to_string(),
        }
    }
}

/// Checks that `value` has between `min` and `max` characters.
pub fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = value.chars().count();
    if n < min || n > max {
        let problem = if min == max {
            format!("must be exactly {min} characters, got {n}")
        } else if n < min && min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must be {min} to {max} characters, got {n}")
        };
        return Err(ValidationError::new(field, problem));
    }
    Ok(())
}

/// Checks that every character of `value` is allowed by `allowed`; `description` names the set.
pub fn charset(
    field: &str,
    value: &str,
    description: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ValidationError> {
    match value.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(ValidationError::new(
            field,
            format!("contains {c:?}; allowed are {description}"),
        )),
        None => Ok(()),
    }
}

/// Checks that `value` is within `min..=max`.
pub fn range<T: PartialOrd + fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::new(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_errors_name_the_field_and_the_bounds() {
        let err = length("name", "", 1, 64).unwrap_err();
        assert_eq!(err.to_string(), "name: must not be empty");
        let err = length("name", &"x".repeat(65), 1, 64).unwrap_err();
        assert_eq!(err.to_string(), "name: must be 1 to 64 characters, got 65");
    }

    #[test]
    fn charset_errors_quote_the_first_bad_character() {
        let err = charset("id", "ab!c", "letters", char::is_alphabetic).unwrap_err();
        assert_eq!(err.to_string(), "id: contains '!'; allowed are letters");
    }

    #[test]
    fn range_is_inclusive() {
        assert!(range("rate", 1, 1, 10).is_ok());
        assert!(range("rate", 10, 1, 10).is_ok());
        assert_eq!(
            range("rate", 11, 1, 10).unwrap_err().to_string(),
            "rate: must be between 1 and 10, got 11"
        );
    }
}
