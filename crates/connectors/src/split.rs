//! Cutting a reply that is longer than the channel allows into messages sent in order: at
//! paragraph breaks if possible, else at sentence ends, else between words, else anywhere.

/// `text` in pieces of at most `max_chars` characters each.
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max_chars {
        // The byte offset just past the last character that fits.
        let limit = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let cut = last_break(window, &["\n\n"])
            .or_else(|| last_break(window, &[". ", "! ", "? ", ".\n", "!\n", "?\n", "\n"]))
            .or_else(|| window.rfind(char::is_whitespace).filter(|&i| i > 0))
            .unwrap_or(limit);
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece.trim_end().to_owned());
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

/// The end of the last of `breaks` in `window` (the break's punctuation stays with the text
/// before it), if any lies past the start.
fn last_break(window: &str, breaks: &[&str]) -> Option<usize> {
    breaks
        .iter()
        .filter_map(|b| window.rfind(b).map(|i| i + b.trim_end().len()))
        .filter(|&i| i > 0)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_fits(pieces: &[String], max: usize) {
        for piece in pieces {
            assert!(
                piece.chars().count() <= max,
                "{piece:?} is longer than {max}"
            );
            assert!(!piece.is_empty());
        }
    }

    #[test]
    fn short_text_stays_whole() {
        assert_eq!(split("Hello there.", 20), ["Hello there."]);
        assert!(split("   ", 20).is_empty());
    }

    #[test]
    fn paragraphs_first() {
        let text = "First paragraph. It has two sentences.\n\nSecond paragraph.";
        assert_eq!(
            split(text, 45),
            [
                "First paragraph. It has two sentences.",
                "Second paragraph."
            ]
        );
    }

    #[test]
    fn then_sentences() {
        let text = "One sentence here. Another one there! A third?";
        let pieces = split(text, 30);
        assert_eq!(
            pieces,
            ["One sentence here.", "Another one there! A third?"]
        );
    }

    #[test]
    fn then_words_then_anywhere() {
        assert_eq!(
            split("alpha beta gamma delta", 11),
            ["alpha beta", "gamma delta"]
        );
        assert_eq!(split("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn counts_characters_not_bytes_and_loses_nothing() {
        let text = "Grüße aus Köln! ".repeat(400);
        let pieces = split(&text, 4096);
        assert_fits(&pieces, 4096);
        assert_eq!(
            pieces.join(" ").split_whitespace().count(),
            text.split_whitespace().count()
        );
        let emoji = "😀".repeat(100);
        let pieces = split(&emoji, 70);
        assert_eq!(
            pieces.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [70, 30]
        );
    }
}
