//! Passages cut from an extracted document along its structure, for retrieval.
//!
//! A passage holds consecutive blocks under one heading path, about [`TARGET_TOKENS`] and at
//! most [`MAX_TOKENS`]; only a block over the maximum is cut, at sentences, then at whitespace.
//! Passages under one heading overlap by the previous passage's last block (or its last
//! sentences, about [`OVERLAP_TOKENS`]), so an answer spanning the cut is whole in one of them.
//!
//! Short sections are not merged with the next: a passage has one heading path, and a merged
//! section's text would be found under its neighbour's heading.

use crate::llm::estimate_tokens;

use super::extract::{Block, Extracted};

/// A passage is closed once it reaches this size.
pub const TARGET_TOKENS: u32 = 400;
/// No passage is larger, unless a single word is.
pub const MAX_TOKENS: u32 = 500;
/// At most this much of a passage starts the next one under the same heading.
pub const OVERLAP_TOKENS: u32 = 60;

/// Between a heading path's parts.
const HEADING_SEPARATOR: &str = " › ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// The heading path ("Installation › Requirements"); before any heading, the title.
    pub heading: Option<String>,
    /// The blocks without the heading, apart by blank lines; list items start with "- ".
    pub text: String,
    /// [`estimate_tokens`] of `text`.
    pub tokens: u32,
}

/// Cuts `doc` into passages, in reading order; none is empty.
pub fn passages(doc: &Extracted) -> Vec<Passage> {
    let mut packer = Packer::default();
    let mut heading_path: Vec<(u8, &str)> = Vec::new();
    let mut block_number = 0usize;
    for block in &doc.blocks {
        let text = match block {
            Block::Heading { level, text } => {
                // No overlap across headings.
                packer.close();
                while heading_path.last().is_some_and(|(last, _)| last >= level) {
                    heading_path.pop();
                }
                heading_path.push((*level, text));
                packer.heading = Some(
                    heading_path
                        .iter()
                        .map(|(_, text)| *text)
                        .collect::<Vec<_>>()
                        .join(HEADING_SEPARATOR),
                );
                continue;
            }
            Block::Paragraph(text) => text.trim().to_owned(),
            Block::ListItem(text) => format!("- {}", text.trim()),
        };
        if text.is_empty() {
            continue;
        }
        if packer.heading.is_none() {
            packer.heading.clone_from(&doc.title);
        }
        block_number += 1;
        for piece in pieces_within(&text, MAX_TOKENS) {
            packer.add(Piece {
                text: piece,
                block: block_number,
            });
        }
    }
    packer.close();
    packer.passages
}

/// A block, or a part of one over the maximum.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    /// Parts of one block are joined by a space, blocks by a blank line.
    block: usize,
}

#[derive(Debug, Default)]
struct Packer {
    heading: Option<String>,
    current: Vec<Piece>,
    passages: Vec<Passage>,
}

impl Packer {
    fn add(&mut self, piece: Piece) {
        if !self.current.is_empty() {
            let tokens = estimate_tokens(&join(&self.current));
            let mut with_piece = self.current.clone();
            with_piece.push(piece.clone());
            if tokens >= TARGET_TOKENS || estimate_tokens(&join(&with_piece)) > MAX_TOKENS {
                let overlap = self.current.last().and_then(overlap_of);
                self.close();
                // The overlap is left out only where it would push the piece over the maximum.
                if let Some(overlap) = overlap {
                    let with_overlap = [overlap.clone(), piece.clone()];
                    if estimate_tokens(&join(&with_overlap)) <= MAX_TOKENS {
                        self.current.push(overlap);
                    }
                }
            }
        }
        self.current.push(piece);
    }

    fn close(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let text = join(&self.current);
        self.current.clear();
        self.passages.push(Passage {
            heading: self.heading.clone(),
            tokens: estimate_tokens(&text),
            text,
        });
    }
}

fn join(pieces: &[Piece]) -> String {
    let mut text = String::new();
    let mut previous_block = None;
    for piece in pieces {
        match previous_block {
            None => {}
            Some(block) if block == piece.block => text.push(' '),
            Some(_) => text.push_str("\n\n"),
        }
        text.push_str(&piece.text);
        previous_block = Some(piece.block);
    }
    text
}

/// The piece whole if small, else its last sentences, else its last words.
fn overlap_of(last: &Piece) -> Option<Piece> {
    if estimate_tokens(&last.text) <= OVERLAP_TOKENS {
        return Some(last.clone());
    }
    let tail = tail_within(&sentences(&last.text), " ", OVERLAP_TOKENS).or_else(|| {
        let words: Vec<&str> = last.text.split_whitespace().collect();
        tail_within(&words, " ", OVERLAP_TOKENS)
    })?;
    Some(Piece {
        text: tail,
        block: last.block,
    })
}

/// The most trailing `parts`, joined by `separator`, within `limit` tokens.
fn tail_within(parts: &[&str], separator: &str, limit: u32) -> Option<String> {
    let mut taken = 0;
    for count in 1..=parts.len() {
        let tail = parts[parts.len() - count..].join(separator);
        if estimate_tokens(&tail) > limit {
            break;
        }
        taken = count;
    }
    (taken > 0).then(|| parts[parts.len() - taken..].join(separator))
}

/// `text` whole if within `limit` tokens, else cut at sentences into pieces within it; a
/// sentence over the limit is cut at whitespace, and a word over it at characters.
fn pieces_within(text: &str, limit: u32) -> Vec<String> {
    if estimate_tokens(text) <= limit {
        return vec![text.to_owned()];
    }
    let mut pieces = Vec::new();
    for sentence in sentences(text) {
        if estimate_tokens(sentence) <= limit {
            pieces.push(sentence.to_owned());
            continue;
        }
        for word_run in runs_within(sentence.split_whitespace(), " ", limit) {
            if estimate_tokens(&word_run) <= limit {
                pieces.push(word_run);
            } else {
                pieces.extend(runs_within(word_run.chars().map(String::from), "", limit));
            }
        }
    }
    pieces
}

/// `parts` in order, greedily joined into runs within `limit` tokens; a part over it alone is a
/// run of its own.
fn runs_within<S: AsRef<str>>(
    parts: impl Iterator<Item = S>,
    separator: &str,
    limit: u32,
) -> Vec<String> {
    let mut runs = Vec::new();
    let mut run = String::new();
    for part in parts {
        let part = part.as_ref();
        if !run.is_empty() {
            let candidate = format!("{run}{separator}{part}");
            if estimate_tokens(&candidate) <= limit {
                run = candidate;
                continue;
            }
            runs.push(std::mem::take(&mut run));
        }
        run.push_str(part);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// `text`'s sentences, trimmed: each ends at `.`, `!`, `?` or `…` (and any closing quotes or
/// brackets) before whitespace, or at a CJK full stop.
fn sentences(text: &str) -> Vec<&str> {
    const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', ']', '»'];
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let end = match c {
            '。' | '！' | '？' => Some(index + c.len_utf8()),
            '.' | '!' | '?' | '…' => {
                let mut end = index + c.len_utf8();
                while let Some(&(next_index, next)) = chars.peek() {
                    if !CLOSERS.contains(&next) {
                        break;
                    }
                    end = next_index + next.len_utf8();
                    chars.next();
                }
                match chars.peek() {
                    None => Some(end),
                    Some((_, next)) if next.is_whitespace() => Some(end),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(end) = end {
            let sentence = text[start..end].trim();
            if !sentence.is_empty() {
                sentences.push(sentence);
            }
            start = end;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        sentences.push(rest);
    }
    sentences
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heading(level: u8, text: &str) -> Block {
        Block::Heading {
            level,
            text: text.to_owned(),
        }
    }

    /// A paragraph of `sentences` distinct sentences of about 14 tokens each.
    fn paragraph(label: &str, sentences: usize) -> Block {
        Block::Paragraph(
            (1..=sentences)
                .map(|n| format!("In {label} sentence {n} says something useful to customers."))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    fn document() -> Extracted {
        let mut blocks = vec![paragraph("the preface", 3), heading(1, "Installation")];
        blocks.push(paragraph("the installation intro", 4));
        blocks.push(heading(2, "Requirements"));
        for n in 0..14 {
            blocks.push(paragraph(&format!("requirement part {n}"), 3 + n % 5));
            if n % 4 == 0 {
                blocks.push(Block::ListItem(format!("a 64-bit CPU, item {n}")));
            }
        }
        blocks.push(heading(1, "Usage"));
        blocks.push(paragraph("the usage intro", 2));
        blocks.push(heading(3, "Deep section"));
        blocks.push(paragraph("the deep section", 1));
        Extracted {
            title: Some("Handbook".to_owned()),
            blocks,
        }
    }

    #[test]
    fn passages_follow_the_headings_within_the_token_bounds() {
        let passages = passages(&document());
        for passage in &passages {
            assert!(!passage.text.trim().is_empty(), "{passage:?}");
            assert!(passage.tokens <= MAX_TOKENS, "{passage:?}");
            assert_eq!(passage.tokens, estimate_tokens(&passage.text));
            assert!(!passage.text.contains("Requirements"), "headings stay out");
        }
        let headings: Vec<Option<&str>> = passages.iter().map(|p| p.heading.as_deref()).collect();
        let requirements = headings
            .iter()
            .filter(|h| **h == Some("Installation › Requirements"))
            .count();
        assert!(requirements >= 3, "{headings:?}");
        assert_eq!(headings.first(), Some(&Some("Handbook")));
        assert_eq!(headings[1], Some("Installation"));
        assert_eq!(headings[headings.len() - 2], Some("Usage"));
        assert_eq!(headings.last(), Some(&Some("Usage › Deep section")));
        // A section's passages but its last are full; a heading starts a new one however small.
        let requirement_passages: Vec<&Passage> = passages
            .iter()
            .filter(|p| p.heading.as_deref() == Some("Installation › Requirements"))
            .collect();
        for passage in &requirement_passages[..requirement_passages.len() - 1] {
            assert!(passage.tokens >= 250, "{passage:?}");
        }
        assert!(passages[1].text.starts_with("In the installation intro"));
        assert!(
            passages
                .iter()
                .any(|p| p.text.contains("\n\n- a 64-bit CPU, item 0"))
        );
        let all_text = passages.iter().map(|p| p.text.as_str()).collect::<String>();
        for n in 0..14 {
            assert!(all_text.contains(&format!("In requirement part {n} sentence 3 says")));
        }
    }

    #[test]
    fn consecutive_passages_under_one_heading_overlap() {
        let passages = passages(&document());
        let mut overlaps = 0;
        for pair in passages.windows(2) {
            let (previous, next) = (&pair[0], &pair[1]);
            let first_block = next.text.split("\n\n").next().unwrap_or_default();
            if previous.heading == next.heading {
                assert!(
                    previous.text.ends_with(first_block),
                    "{previous:?}\n{next:?}"
                );
                overlaps += 1;
            } else {
                assert!(
                    !previous.text.contains(first_block),
                    "no overlap across headings"
                );
            }
        }
        assert!(overlaps >= 2);
    }

    #[test]
    fn a_giant_paragraph_is_split_at_sentences() {
        let doc = Extracted {
            title: None,
            blocks: vec![heading(1, "Terms"), paragraph("the terms", 150)],
        };
        let passages = passages(&doc);
        assert!(passages.len() >= 5, "{}", passages.len());
        for pair in passages.windows(2) {
            let (previous, next) = (&pair[0], &pair[1]);
            assert!(previous.tokens <= MAX_TOKENS && previous.tokens >= 300);
            assert!(previous.text.starts_with("In the terms sentence "));
            assert!(previous.text.ends_with("customers."));
            // The overlap: the previous passage's last sentences, within the overlap budget.
            let overlap_end = next
                .text
                .match_indices("customers.")
                .map(|(index, _)| index + "customers.".len())
                .take_while(|end| previous.text.ends_with(&next.text[..*end]))
                .last()
                .expect("overlap");
            assert!(estimate_tokens(&next.text[..overlap_end]) <= OVERLAP_TOKENS);
            assert_eq!(next.heading.as_deref(), Some("Terms"));
        }
        for n in 1..=150 {
            let sentence = format!("In the terms sentence {n} says");
            assert!(passages.iter().any(|p| p.text.contains(&sentence)), "{n}");
        }
    }

    #[test]
    fn a_sentence_over_the_maximum_is_split_at_whitespace() {
        let endless = vec!["word"; 1200].join(" ");
        let doc = Extracted {
            title: Some("Notes".to_owned()),
            blocks: vec![Block::Paragraph(endless.clone())],
        };
        let passages = passages(&doc);
        assert!(passages.len() >= 3);
        for passage in &passages {
            assert!(passage.tokens <= MAX_TOKENS, "{}", passage.tokens);
            assert!(passage.text.split(' ').all(|word| word == "word"));
            assert_eq!(passage.heading.as_deref(), Some("Notes"));
        }
        let unbroken = Extracted {
            title: None,
            blocks: vec![Block::Paragraph("x".repeat(5000))],
        };
        let passages = super::passages(&unbroken);
        assert!(passages.iter().all(|p| p.tokens <= MAX_TOKENS));
        assert_eq!(passages[0].heading, None);
    }

    #[test]
    fn sentences_end_at_terminators_before_whitespace() {
        assert_eq!(
            sentences("Open at 9.30 daily. He said \"come in!\" Really? Yes… 你好。世界！ok v1.2"),
            vec![
                "Open at 9.30 daily.",
                "He said \"come in!\"",
                "Really?",
                "Yes…",
                "你好。",
                "世界！",
                "ok v1.2",
            ]
        );
    }
}
