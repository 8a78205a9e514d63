//! What a customer wrote this time, without the history their mail program quoted below it
//! or their signature: the model should read the new words once, not every earlier mail again
//! (and not answer our own earlier reply). Hand-written, as no maintained crate does this;
//! it knows the shapes of the common mail programs' quotes.

/// The lines that begin the quoted history, by their first word and their verb, in the
/// languages customers write in: "On Mon, 1 Dec 2026, Help <help@shop.example> wrote:",
/// "Am … schrieb Help <…>:", "Le … a écrit :". Such a line ends with a colon.
const QUOTE_HEADERS: &[(&str, &str)] = &[
    ("On ", " wrote"),
    ("Am ", " schrieb"),
    ("Le ", " a écrit"),
    ("El ", " escribió"),
    ("Il ", " ha scritto"),
    ("Op ", " schreef"),
    ("Op ", " geschreven"),
    ("Em ", " escreveu"),
];

/// Lines after which everything is history or signature.
const CUT_LINES: &[&str] = &[
    "--",
    "-----Original Message-----",
    "----- Original Message -----",
    "________________________________",
    "Sent from my iPhone",
    "Sent from my iPad",
    "Sent from my Android",
    "Get Outlook for iOS",
    "Get Outlook for Android",
];

/// `text` up to its quoted history or signature, without `>` lines; the whole of `text`
/// (trimmed) when nothing else would be left.
pub fn strip(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        if begins_history(&lines[at..]) {
            break;
        }
        if !line.trim_start().starts_with('>') {
            kept.push(*line);
        }
    }
    let new = kept.join("\n").trim().to_owned();
    if new.is_empty() {
        text.trim().to_owned()
    } else {
        new
    }
}

/// Whether the quoted history (or the signature) begins at the first of `lines`.
fn begins_history(lines: &[&str]) -> bool {
    let Some(first) = lines.first() else {
        return false;
    };
    // `trim`: the signature's "-- " often loses its space on the way.
    if CUT_LINES.contains(&first.trim()) {
        return true;
    }
    // Mail programs wrap a long "On … wrote:" line, so it may end on the next one.
    let one = first.trim();
    let two = lines.get(1).map(|next| format!("{one} {}", next.trim()));
    let is_header = |line: &str| {
        QUOTE_HEADERS.iter().any(|(opens, verb)| {
            line.starts_with(opens) && line.contains(verb) && line.ends_with(':')
        })
    };
    if is_header(one) || two.as_deref().is_some_and(is_header) {
        return true;
    }
    // Outlook's header block: "From: …" with "Sent: …" or "Date: …" just below.
    one.starts_with("From: ")
        && lines
            .iter()
            .skip(1)
            .take(3)
            .any(|line| line.starts_with("Sent: ") || line.starts_with("Date: "))
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn the_quoted_history_is_cut() {
        let gmail = "Thanks, and the size?\n\nOn Mon, Dec 1, 2026 at 10:00 AM Help <\nhelp@shop.example> wrote:\n> It ships today.\n> Best\n";
        assert_eq!(strip(gmail), "Thanks, and the size?");
        let german =
            "Danke!\r\n\r\nAm 01.12.2026 um 10:00 schrieb Help <help@shop.example>:\r\n> Heute.";
        assert_eq!(strip(german), "Danke!");
        let outlook = "Yes please.\n\n________________________________\nFrom: Help <help@shop.example>\nSent: Monday\nSubject: Re: order\n\nIt ships today.";
        assert_eq!(strip(outlook), "Yes please.");
        let outlook_plain = "Yes.\n\nFrom: Help\nSent: Monday\nTo: Ada\n\nOld words";
        assert_eq!(strip(outlook_plain), "Yes.");
        let original = "Fine\n-----Original Message-----\nold";
        assert_eq!(strip(original), "Fine");
    }

    #[test]
    fn inline_quotes_and_signatures_are_cut() {
        let inline = "> Which size?\nMedium.\n> And the colour?\nBlue.\n\n-- \nAda Lovelace\nAnalytical Engines Ltd";
        assert_eq!(strip(inline), "Medium.\nBlue.");
        let phone = "On my way 🚲\n\nSent from my iPhone";
        assert_eq!(strip(phone), "On my way 🚲");
    }

    #[test]
    fn words_that_only_look_like_history_stay() {
        let text = "On Monday I ordered a lamp.\nFrom: the catalogue, page 3.\nIt has not come.";
        assert_eq!(strip(text), text);
        assert_eq!(strip("> only a quote"), "> only a quote");
        assert_eq!(strip("  \n "), "");
    }
}
