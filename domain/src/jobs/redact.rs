//! Error text from SMTP servers and Twilio may quote the recipient ("The 'To'
//! number +15551234567 is not a valid phone number", "550 <pat@example.org>
//! unknown"). Failure records are shown to admins and kept in plaintext, so
//! anything that looks like an address or a phone number is masked first.

/// `text` with email addresses and runs of 7 or more digits replaced.
pub fn redact(text: &str) -> String {
    let words: Vec<String> = text.split(' ').map(redact_word).collect();
    let joined = words.join(" ");
    // Bound what a peer can make us store.
    if joined.chars().count() > 500 {
        let cut: String = joined.chars().take(500).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

fn redact_word(word: &str) -> String {
    if word.contains('@') {
        return "[address]".into();
    }
    let mut out = String::with_capacity(word.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.chars().filter(char::is_ascii_digit).count() >= 7 {
            out.push_str("[number]");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in word.chars() {
        if c.is_ascii_digit()
            || (!digits.is_empty() && matches!(c, '-' | '.' | '(' | ')'))
            || (c == '+' && digits.is_empty())
        {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn masks_addresses_and_phone_numbers_but_keeps_codes() {
        assert_eq!(
            redact("21211: The 'To' number +15551234567 is not a valid phone number."),
            "21211: The 'To' number [number] is not a valid phone number."
        );
        assert_eq!(
            redact("550 5.1.1 <pat@example.org>: Recipient address rejected"),
            "550 5.1.1 [address] Recipient address rejected"
        );
        assert_eq!(redact("451 4.3.0 try again later"), "451 4.3.0 try again later");
        assert_eq!(redact("call (555) 123-4567"), "call (555) [number]");
    }
}
