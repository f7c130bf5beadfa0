//! Error text cut to size. Text built from tenant input or tenant code (a document's field
//! error, a plugin's trap message) goes into responses, status rows and log lines only
//! through [`cap_error`], so a tenant cannot make them arbitrarily large (docs/security.md).

/// Longest error text (bytes) built from tenant input or tenant code that goes into a
/// response, a status row or a log line; the rest is cut.
pub const MAX_ERROR_BYTES: usize = 1024;

/// `text` cut to [`MAX_ERROR_BYTES`] on a character boundary, saying how much was cut.
pub fn cap_error(text: &str) -> String {
    cap_text(text, MAX_ERROR_BYTES)
}

/// `text` cut to at most `max` bytes (plus a short note of what was cut).
pub fn cap_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        assert_eq!(cap_error("short"), "short");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = cap_error(&long);
        assert!(cut.starts_with("éé") && cut.ends_with("more bytes cut)"), "{cut}");
        assert!(cut.len() < MAX_ERROR_BYTES + 40, "{}", cut.len());
        assert_eq!(cap_text("abcdef", 3), "abc… (3 more bytes cut)");
    }
}
