//! Text out of uploaded documents, as the headings, paragraphs and list items that
//! [`super::chunk`] packs into passages.
//!
//! Text and Markdown: pulldown-cmark, because it is the maintained CommonMark parser, and plain
//! text reads as Markdown whose paragraphs are separated by blank lines.
//! HTML: scraper, because it parses with html5ever (Servo's implementation of the HTML standard's
//! parser), so a broken real page comes out as a browser would show it.
//! PDF: pdf-extract, because it turns fonts' encodings and ToUnicode maps into text, which lopdf
//! (the parser it reads files with) leaves to its users.
//! DOCX: zip + quick-xml, because only `word/document.xml` and `word/styles.xml` are needed; the
//! DOCX crates build a whole document model to get there.

use std::collections::HashMap;
use std::fmt;
use std::io::{Cursor, Read};
use std::panic::{self, AssertUnwindSafe};

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use quick_xml::XmlVersion;
use quick_xml::events::{BytesRef, BytesStart, Event as XmlEvent};
use scraper::{ElementRef, Html, Node};

/// A DOCX's XML is unpacked into memory; past this a small upload is a zip bomb.
const MAX_UNPACKED_XML_BYTES: u64 = 64 * 1024 * 1024;

/// What kind of file an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text and Markdown alike: text without markup is Markdown made of paragraphs.
    Text,
    Html,
    Pdf,
    Docx,
}

/// A document's text, in reading order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// HTML's `<title>`, or a DOCX's first paragraph in the Title style.
    pub title: Option<String>,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// `level` is 1 (the top) to 6.
    Heading {
        level: u8,
        text: String,
    },
    Paragraph(String),
    /// One item of a bulleted or numbered list, without its bullet or number.
    ListItem(String),
}

/// Why a file gave no text; [`ExtractError`]'s `Display` says it to the business owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtractErrorKind {
    NotUtf8,
    NotPdf,
    PdfEncrypted,
    PdfNoTextLayer,
    PdfUnreadable,
    NotDocx,
    TooLarge,
    NoText,
}

/// A file that gave no text. `Display` is one sentence a business owner can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractError(ExtractErrorKind);

impl ExtractError {
    pub fn kind(self) -> ExtractErrorKind {
        self.0
    }
}

impl From<ExtractErrorKind> for ExtractError {
    fn from(kind: ExtractErrorKind) -> Self {
        Self(kind)
    }
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            ExtractErrorKind::NotUtf8 => "the file is not UTF-8 text",
            ExtractErrorKind::NotPdf => "the file is not a PDF",
            ExtractErrorKind::PdfEncrypted => "the PDF is encrypted",
            ExtractErrorKind::PdfNoTextLayer => {
                "the PDF has no text layer (it is scanned images); upload a PDF with selectable \
                 text or a text file"
            }
            ExtractErrorKind::PdfUnreadable => "the PDF could not be read",
            ExtractErrorKind::NotDocx => "the file is not a DOCX document",
            ExtractErrorKind::TooLarge => {
                "the document is too large once unpacked; split it into smaller files"
            }
            ExtractErrorKind::NoText => "the document has no text",
        })
    }
}

impl std::error::Error for ExtractError {}

/// Reads `bytes` as `format`. Text and HTML must be UTF-8 without NUL bytes: a NUL means a
/// binary file or UTF-16, and stripping it would store garbage (PostgreSQL `text` cannot hold
/// NUL anyway). Control characters that PDFs and DOCX files carry are dropped from the text.
pub fn extract(format: Format, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let extracted = match format {
        Format::Text => extract_markdown(decode_text(bytes)?),
        Format::Html => extract_html(decode_text(bytes)?),
        Format::Pdf => extract_pdf(bytes)?,
        Format::Docx => extract_docx(bytes)?,
    };
    // Headings alone answer nothing.
    let has_body = extracted
        .blocks
        .iter()
        .any(|block| !matches!(block, Block::Heading { .. }));
    if !has_body {
        return Err(ExtractErrorKind::NoText.into());
    }
    Ok(extracted)
}

fn decode_text(bytes: &[u8]) -> Result<&str, ExtractError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ExtractErrorKind::NotUtf8)?;
    if text.contains('\0') {
        return Err(ExtractErrorKind::NotUtf8.into());
    }
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Blocks as they are found, tidied and with empty ones left out.
#[derive(Debug, Default)]
struct BlockList(Vec<Block>);

impl BlockList {
    fn heading(&mut self, level: u8, text: &str) {
        let text = single_line(text);
        if !text.is_empty() {
            self.0.push(Block::Heading {
                level: level.clamp(1, 6),
                text,
            });
        }
    }

    fn body(&mut self, list_item: bool, text: &str) {
        let text = tidy(text);
        if text.is_empty() {
        } else if list_item {
            self.0.push(Block::ListItem(text));
        } else {
            self.0.push(Block::Paragraph(text));
        }
    }
}

/// Whitespace runs as single spaces, control characters gone.
fn single_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Line breaks kept; tabs as spaces, other control characters gone, lines' trailing
/// whitespace and the block's blank first and last lines dropped.
fn tidy(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            '\n' => Some('\n'),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    let lines: Vec<&str> = cleaned.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|line| !line.trim().is_empty());
    let last = lines.iter().rposition(|line| !line.trim().is_empty());
    match (first, last) {
        (Some(first), Some(last)) => lines[first..=last].join("\n"),
        _ => String::new(),
    }
}

fn extract_markdown(text: &str) -> Extracted {
    let mut blocks = BlockList::default();
    let mut buffer = String::new();
    let mut heading: Option<u8> = None;
    let mut item_depth = 0usize;
    let flush = |blocks: &mut BlockList, buffer: &mut String, heading: Option<u8>, item: bool| {
        match heading {
            Some(level) => blocks.heading(level, buffer),
            None => blocks.body(item, buffer),
        }
        buffer.clear();
    };
    for event in Parser::new(text) {
        let in_item = item_depth > 0;
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut blocks, &mut buffer, None, in_item);
                heading = Some(heading_level(level));
            }
            Event::End(TagEnd::Heading(_)) => {
                flush(&mut blocks, &mut buffer, heading, in_item);
                heading = None;
            }
            // A list item's paragraphs and code stay in the item, one per line.
            Event::Start(Tag::Paragraph | Tag::CodeBlock(_))
                if in_item && !buffer.is_empty() && !buffer.ends_with('\n') =>
            {
                buffer.push('\n');
            }
            Event::Start(Tag::Paragraph | Tag::CodeBlock(_))
            | Event::End(TagEnd::Paragraph | TagEnd::CodeBlock)
                if in_item => {}
            Event::Start(Tag::Item) => {
                flush(&mut blocks, &mut buffer, None, in_item);
                item_depth += 1;
            }
            Event::End(TagEnd::Item) => {
                flush(&mut blocks, &mut buffer, None, in_item);
                item_depth -= 1;
            }
            Event::Start(Tag::HtmlBlock) => {
                flush(&mut blocks, &mut buffer, None, in_item);
            }
            Event::End(TagEnd::HtmlBlock) => {
                let text = html_fragment_text(&buffer);
                buffer.clear();
                blocks.body(in_item, &text);
            }
            Event::Start(
                Tag::Paragraph | Tag::BlockQuote(_) | Tag::CodeBlock(_) | Tag::List(_),
            )
            | Event::End(
                TagEnd::Paragraph | TagEnd::BlockQuote(_) | TagEnd::CodeBlock | TagEnd::List(_),
            )
            | Event::Rule => flush(&mut blocks, &mut buffer, None, in_item),
            Event::Text(text) | Event::Code(text) | Event::Html(text) => buffer.push_str(&text),
            // Angle brackets in plain text read as inline HTML: kept, but for line breaks.
            Event::InlineHtml(html) => {
                if is_line_break_tag(&html) {
                    buffer.push('\n');
                } else {
                    buffer.push_str(&html);
                }
            }
            Event::SoftBreak | Event::HardBreak => buffer.push('\n'),
            _ => {}
        }
    }
    flush(&mut blocks, &mut buffer, heading, item_depth > 0);
    Extracted {
        title: None,
        blocks: blocks.0,
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

fn is_line_break_tag(html: &str) -> bool {
    let name: String = html
        .trim_start_matches('<')
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    name.eq_ignore_ascii_case("br")
}

/// The text of an HTML block inside Markdown, tags dropped.
fn html_fragment_text(html: &str) -> String {
    let fragment = Html::parse_fragment(html);
    let mut walker = HtmlWalker::default();
    walker.walk(&fragment);
    walker.flush();
    walker
        .blocks
        .0
        .iter()
        .map(|block| match block {
            Block::Heading { text, .. } | Block::Paragraph(text) | Block::ListItem(text) => {
                text.as_str()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn extract_html(text: &str) -> Extracted {
    let document = Html::parse_document(text);
    let mut walker = HtmlWalker::default();
    walker.walk(&document);
    walker.flush();
    Extracted {
        title: walker.title,
        blocks: walker.blocks.0,
    }
}

/// Never text for the knowledge base: code, page furniture, controls.
const DROPPED_ELEMENTS: &[&str] = &[
    "script", "style", "nav", "header", "footer", "aside", "noscript", "form", "svg", "template",
    "iframe", "button", "select", "textarea",
];
/// DocBook's (the PostgreSQL documentation's) previous/next tables at a page's top and bottom.
const DROPPED_CLASSES: &[&str] = &["navheader", "navfooter"];
/// DocBook's note, tip and warning boxes: their "Note" heading labels the box's text instead of
/// starting a section, which would take in the paragraphs after the box.
const ADMONITION_CLASSES: &[&str] = &["note", "tip", "warning", "caution", "important"];
/// Elements whose start and end end a paragraph; the rest are inline.
const BLOCK_ELEMENTS: &[&str] = &[
    "address",
    "article",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "hr",
    "html",
    "legend",
    "main",
    "ol",
    "p",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
];

#[derive(Debug, Default)]
struct HtmlWalker {
    title: Option<String>,
    blocks: BlockList,
    buffer: String,
    pre_depth: usize,
    list_item_depth: usize,
    admonition_depth: usize,
    /// An admonition's label ("Note: "), put before its first paragraph.
    label: Option<String>,
}

enum Step<N> {
    Enter(N),
    Leave(N),
}

impl HtmlWalker {
    /// Iterative, so a deeply nested page cannot overflow the stack.
    fn walk(&mut self, html: &Html) {
        let mut steps = vec![Step::Enter(html.tree.root())];
        while let Some(step) = steps.pop() {
            match step {
                Step::Enter(node) => match node.value() {
                    Node::Text(text) => self.text(text),
                    Node::Element(_) => {
                        let Some(element) = ElementRef::wrap(node) else {
                            continue;
                        };
                        if self.enter(element) {
                            steps.push(Step::Leave(node));
                            steps.extend(node.children().rev().map(Step::Enter));
                        }
                    }
                    Node::Document | Node::Fragment => {
                        steps.extend(node.children().rev().map(Step::Enter));
                    }
                    _ => {}
                },
                Step::Leave(node) => {
                    if let Some(element) = ElementRef::wrap(node) {
                        self.leave(element);
                    }
                }
            }
        }
    }

    /// Handles an element's start; true to walk its children.
    fn enter(&mut self, element: ElementRef<'_>) -> bool {
        let value = element.value();
        let name = value.name();
        let has_class = |classes: &[&str]| value.classes().any(|class| classes.contains(&class));
        if DROPPED_ELEMENTS.contains(&name)
            || has_class(DROPPED_CLASSES)
            || value.attr("hidden").is_some()
        {
            return false;
        }
        if name == "title" {
            if self.title.is_none() {
                let title = single_line(&element.text().collect::<String>());
                self.title = (!title.is_empty()).then_some(title);
            }
            return false;
        }
        if let Some(level) = html_heading_level(name) {
            self.flush();
            let text = element.text().collect::<String>();
            if self.admonition_depth > 0 {
                let label = single_line(&text);
                self.label = (!label.is_empty()).then(|| format!("{label}: "));
            } else {
                self.blocks.heading(level, &text);
            }
            return false;
        }
        match name {
            "br" => self.buffer.push('\n'),
            "pre" => {
                self.flush();
                self.pre_depth += 1;
            }
            "li" => {
                self.flush();
                self.list_item_depth += 1;
            }
            _ if BLOCK_ELEMENTS.contains(&name) => {
                self.flush();
                if has_class(ADMONITION_CLASSES) {
                    self.admonition_depth += 1;
                }
            }
            _ => {}
        }
        true
    }

    fn leave(&mut self, element: ElementRef<'_>) {
        let value = element.value();
        match value.name() {
            "pre" => {
                self.flush();
                self.pre_depth -= 1;
            }
            "li" => {
                self.flush();
                self.list_item_depth -= 1;
            }
            name if BLOCK_ELEMENTS.contains(&name) => {
                self.flush();
                if value
                    .classes()
                    .any(|class| ADMONITION_CLASSES.contains(&class))
                {
                    self.admonition_depth -= 1;
                    self.label = None;
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if self.pre_depth > 0 {
            self.buffer.push_str(text);
            return;
        }
        for c in text.chars() {
            if c.is_whitespace() {
                if !self.buffer.is_empty() && !self.buffer.ends_with([' ', '\n']) {
                    self.buffer.push(' ');
                }
            } else {
                self.buffer.push(c);
            }
        }
    }

    fn flush(&mut self) {
        let text = if self.pre_depth > 0 {
            tidy(&self.buffer)
        } else {
            // Only `<br>` made these line breaks; the spaces around them are the source's.
            self.buffer
                .split('\n')
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        self.buffer.clear();
        if tidy(&text).is_empty() {
            return;
        }
        let text = match self.label.take() {
            Some(label) => format!("{label}{text}"),
            None => text,
        };
        self.blocks.body(self.list_item_depth > 0, &text);
    }
}

fn html_heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

fn extract_pdf(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    // Readers accept the header anywhere in the first KiB; lopdf alone would search the file.
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|window| window == b"%PDF-") {
        return Err(ExtractErrorKind::NotPdf.into());
    }
    let pages = pdf_pages_text(bytes)?;
    if pages.iter().all(|page| page.trim().is_empty()) {
        return Err(ExtractErrorKind::PdfNoTextLayer.into());
    }
    let mut blocks = BlockList::default();
    for page in &pages {
        for paragraph in page.split("\n\n") {
            blocks.body(false, &join_pdf_lines(paragraph));
        }
    }
    Ok(Extracted {
        title: None,
        blocks: blocks.0,
    })
}

/// Each page's text; pdf-extract leaves a blank line where the text jumps down further than a
/// line, which is where paragraphs end. pdf-extract and lopdf panic on some malformed files
/// (`unwrap`s on their objects): such a page is left out, and a document that panics loading
/// is unreadable.
fn pdf_pages_text(bytes: &[u8]) -> Result<Vec<String>, ExtractError> {
    let document = panic::catch_unwind(|| pdf_extract::Document::load_mem(bytes))
        .ok()
        .and_then(Result::ok)
        .ok_or(ExtractErrorKind::PdfUnreadable)?;
    // lopdf decrypts while loading when the password is empty; still encrypted, it needs one.
    if document.is_encrypted() {
        return Err(ExtractErrorKind::PdfEncrypted.into());
    }
    let mut pages = Vec::new();
    let mut unreadable_pages = 0;
    for page_number in document.get_pages().into_keys() {
        // Only reads the document, so a panic leaves nothing half-changed behind.
        let page = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut text = String::new();
            let mut output = pdf_extract::PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&document, &mut output, page_number).map(|()| text)
        }));
        match page {
            Ok(Ok(text)) => pages.push(text),
            Ok(Err(_)) | Err(_) => unreadable_pages += 1,
        }
    }
    // An unreadable page costs that page, unless it is every page.
    if pages.is_empty() && unreadable_pages > 0 {
        return Err(ExtractErrorKind::PdfUnreadable.into());
    }
    Ok(pages)
}

/// A PDF paragraph's lines are where the layout wrapped it: joined with spaces, and a word
/// hyphenated across a line break joined again.
fn join_pdf_lines(paragraph: &str) -> String {
    let mut joined = String::new();
    for line in paragraph
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        let hyphenated = joined.ends_with('-')
            && joined.chars().rev().nth(1).is_some_and(char::is_alphabetic)
            && line.chars().next().is_some_and(char::is_lowercase);
        if hyphenated {
            joined.pop();
        } else if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(line);
    }
    joined
}

/// How a DOCX paragraph style makes a paragraph a heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadingStyle {
    Title,
    Heading(u8),
}

fn extract_docx(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| ExtractErrorKind::NotDocx)?;
    let document =
        read_zip_entry(&mut archive, "word/document.xml")?.ok_or(ExtractErrorKind::NotDocx)?;
    let styles = match read_zip_entry(&mut archive, "word/styles.xml")? {
        Some(styles) => heading_styles(&styles)?,
        None => HashMap::new(),
    };
    docx_blocks(&document, &styles)
}

fn read_zip_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<String>, ExtractError> {
    let entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(_) => return Err(ExtractErrorKind::NotDocx.into()),
    };
    let mut xml = String::new();
    entry
        .take(MAX_UNPACKED_XML_BYTES + 1)
        .read_to_string(&mut xml)
        .map_err(|_| ExtractErrorKind::NotDocx)?;
    if xml.len() as u64 > MAX_UNPACKED_XML_BYTES {
        return Err(ExtractErrorKind::TooLarge.into());
    }
    Ok(Some(xml))
}

/// Style ids to heading levels, by the styles' names: ids are translated in localised Word
/// ("berschrift1"), the built-in names ("heading 1") are not.
fn heading_styles(xml: &str) -> Result<HashMap<String, HeadingStyle>, ExtractError> {
    let mut styles = HashMap::new();
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut style_id: Option<String> = None;
    let mut style_name = String::new();
    let mut outline_level: Option<u8> = None;
    loop {
        match reader.read_event() {
            Err(_) => return Err(ExtractErrorKind::NotDocx.into()),
            Ok(XmlEvent::Eof) => break,
            Ok(XmlEvent::Start(element)) if element.local_name().as_ref() == b"style" => {
                style_id = xml_attribute(&element, b"styleId");
                style_name.clear();
                outline_level = None;
            }
            Ok(XmlEvent::Start(element) | XmlEvent::Empty(element)) => {
                match element.local_name().as_ref() {
                    b"name" => style_name = xml_attribute(&element, b"val").unwrap_or_default(),
                    b"outlineLvl" => {
                        outline_level = xml_attribute(&element, b"val")
                            .and_then(|level| level.parse::<u8>().ok())
                            .filter(|level| *level < 6)
                            .map(|level| level + 1);
                    }
                    _ => {}
                }
            }
            Ok(XmlEvent::End(element)) if element.local_name().as_ref() == b"style" => {
                let name = style_name.to_ascii_lowercase();
                let heading = if name == "title" {
                    Some(HeadingStyle::Title)
                } else if let Some(level) = name
                    .strip_prefix("heading ")
                    .and_then(|level| level.parse::<u8>().ok())
                    .filter(|level| (1..=6).contains(level))
                {
                    Some(HeadingStyle::Heading(level))
                } else {
                    outline_level.map(HeadingStyle::Heading)
                };
                if let (Some(id), Some(heading)) = (style_id.take(), heading) {
                    styles.insert(id, heading);
                }
            }
            Ok(_) => {}
        }
    }
    Ok(styles)
}

/// The built-in ids, for documents whose styles part is missing or does not name them.
fn heading_style_by_id(id: &str) -> Option<HeadingStyle> {
    if id == "Title" {
        return Some(HeadingStyle::Title);
    }
    id.strip_prefix("Heading")
        .and_then(|level| level.parse::<u8>().ok())
        .filter(|level| (1..=6).contains(level))
        .map(HeadingStyle::Heading)
}

#[derive(Debug, Default)]
struct DocxParagraph {
    text: String,
    style: Option<String>,
    numbered: bool,
}

fn docx_blocks(
    xml: &str,
    styles: &HashMap<String, HeadingStyle>,
) -> Result<Extracted, ExtractError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut title = None;
    let mut blocks = BlockList::default();
    // A text box's paragraphs sit inside a run of the paragraph holding the box.
    let mut paragraphs: Vec<DocxParagraph> = Vec::new();
    let mut run_depth = 0usize;
    let mut in_text = false;
    loop {
        let event = reader.read_event().map_err(|_| ExtractErrorKind::NotDocx)?;
        match event {
            XmlEvent::Eof => break,
            XmlEvent::Start(element) => match element.local_name().as_ref() {
                b"p" => paragraphs.push(DocxParagraph::default()),
                b"r" => run_depth += 1,
                b"t" => in_text = true,
                // Drawings come twice, the fallback for old readers repeating their text.
                b"Fallback" => {
                    reader
                        .read_to_end(element.name())
                        .map_err(|_| ExtractErrorKind::NotDocx)?;
                }
                _ => docx_paragraph_property(&element, paragraphs.last_mut()),
            },
            XmlEvent::Empty(element) => match element.local_name().as_ref() {
                b"tab" if run_depth > 0 => push_text(&mut paragraphs, " "),
                b"br" | b"cr" if run_depth > 0 => push_text(&mut paragraphs, "\n"),
                b"noBreakHyphen" if run_depth > 0 => push_text(&mut paragraphs, "-"),
                _ => docx_paragraph_property(&element, paragraphs.last_mut()),
            },
            XmlEvent::End(element) => match element.local_name().as_ref() {
                b"p" => {
                    let Some(paragraph) = paragraphs.pop() else {
                        continue;
                    };
                    let heading = paragraph
                        .style
                        .as_deref()
                        .and_then(|id| styles.get(id).copied().or_else(|| heading_style_by_id(id)));
                    match heading {
                        Some(HeadingStyle::Title) => {
                            if title.is_none() {
                                let text = single_line(&paragraph.text);
                                title = (!text.is_empty()).then_some(text);
                            }
                            blocks.heading(1, &paragraph.text);
                        }
                        Some(HeadingStyle::Heading(level)) => {
                            blocks.heading(level, &paragraph.text)
                        }
                        None => blocks.body(paragraph.numbered, &paragraph.text),
                    }
                }
                b"r" => run_depth = run_depth.saturating_sub(1),
                b"t" => in_text = false,
                _ => {}
            },
            XmlEvent::Text(text) if in_text => {
                let text = text
                    .xml10_content()
                    .map_err(|_| ExtractErrorKind::NotDocx)?;
                push_text(&mut paragraphs, &text);
            }
            XmlEvent::GeneralRef(reference) if in_text => {
                let text = resolve_reference(&reference).ok_or(ExtractErrorKind::NotDocx)?;
                push_text(&mut paragraphs, &text);
            }
            _ => {}
        }
    }
    Ok(Extracted {
        title,
        blocks: blocks.0,
    })
}

fn push_text(paragraphs: &mut [DocxParagraph], text: &str) {
    if let Some(paragraph) = paragraphs.last_mut() {
        paragraph.text.push_str(text);
    }
}

/// `w:pStyle` and `w:numPr` (a list item; `w:numId` 0 takes the numbering away again).
fn docx_paragraph_property(element: &BytesStart<'_>, paragraph: Option<&mut DocxParagraph>) {
    let Some(paragraph) = paragraph else {
        return;
    };
    match element.local_name().as_ref() {
        b"pStyle" => paragraph.style = xml_attribute(element, b"val"),
        b"numPr" => paragraph.numbered = true,
        b"numId" if xml_attribute(element, b"val").as_deref() == Some("0") => {
            paragraph.numbered = false
        }
        _ => {}
    }
}

fn xml_attribute(element: &BytesStart<'_>, local_name: &[u8]) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|attribute| attribute.key.local_name().as_ref() == local_name)
        .and_then(|attribute| attribute.normalized_value(XmlVersion::Implicit1_0).ok())
        .map(|value| value.into_owned())
}

/// `&amp;` and the like, and `&#8364;`, which quick-xml hands over unresolved.
fn resolve_reference(reference: &BytesRef<'_>) -> Option<String> {
    if let Ok(Some(c)) = reference.resolve_char_ref() {
        return Some(c.to_string());
    }
    let name = reference.decode().ok()?;
    quick_xml::escape::resolve_predefined_entity(&name).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use pdf_extract::content::{Content, Operation};
    use pdf_extract::{
        Document, EncryptionState, EncryptionVersion, Object, Permissions, Stream, dictionary,
    };

    use super::*;

    fn paragraph(text: &str) -> Block {
        Block::Paragraph(text.to_owned())
    }

    fn item(text: &str) -> Block {
        Block::ListItem(text.to_owned())
    }

    fn heading(level: u8, text: &str) -> Block {
        Block::Heading {
            level,
            text: text.to_owned(),
        }
    }

    fn error_of(format: Format, bytes: &[u8]) -> ExtractErrorKind {
        match extract(format, bytes) {
            Ok(extracted) => panic!("{format:?} gave {extracted:?}, not an error"),
            Err(error) => error.kind(),
        }
    }

    #[test]
    fn markdown_headings_lists_and_paragraphs_become_blocks() {
        let markdown = "# Opening hours\n\nWe are open **every** day,\nexcept holidays.\n\n\
            ## Weekdays\n\n- Monday to Friday: 9–18\n- Saturday: 10–14\n  * brunch until 12\n\n\
            1. Ring the bell\n2. Wait\n\nSetext heading\n--------------\n\n    \
            code line one\n    code line two\n\n> Quoted [link text](https://example.com).\n";
        let extracted = extract(Format::Text, markdown.as_bytes()).expect("markdown");
        assert_eq!(extracted.title, None);
        assert_eq!(
            extracted.blocks,
            vec![
                heading(1, "Opening hours"),
                paragraph("We are open every day,\nexcept holidays."),
                heading(2, "Weekdays"),
                item("Monday to Friday: 9–18"),
                item("Saturday: 10–14"),
                item("brunch until 12"),
                item("Ring the bell"),
                item("Wait"),
                heading(2, "Setext heading"),
                paragraph("code line one\ncode line two"),
                paragraph("Quoted link text."),
            ]
        );
    }

    #[test]
    fn plain_text_keeps_its_paragraphs_intact() {
        let text = "Dear customer,\r\n\r\nour shop at 12 Main St. is open 9-5 (Mon-Fri).\r\n\
            Parking: 2 * 3 spaces behind the shop; call <reception> first.\r\n\r\n\r\n\
            Prices: 5% off for members_only!\n\nThanks";
        let extracted = extract(Format::Text, text.as_bytes()).expect("plain text");
        assert_eq!(
            extracted.blocks,
            vec![
                paragraph("Dear customer,"),
                paragraph(
                    "our shop at 12 Main St. is open 9-5 (Mon-Fri).\nParking: 2 * 3 spaces \
                     behind the shop; call <reception> first."
                ),
                paragraph("Prices: 5% off for members_only!"),
                paragraph("Thanks"),
            ]
        );
    }

    #[test]
    fn text_with_emoji_and_other_scripts_comes_out_unchanged() {
        let text =
            "\u{feff}Café ☕ — naïve façade 🎉🇩🇪\n\nПривет, мир. 你好，世界。 مرحبا\n\n👨‍👩‍👧 family";
        let extracted = extract(Format::Text, text.as_bytes()).expect("unicode text");
        assert_eq!(
            extracted.blocks,
            vec![
                paragraph("Café ☕ — naïve façade 🎉🇩🇪"),
                paragraph("Привет, мир. 你好，世界。 مرحبا"),
                paragraph("👨‍👩‍👧 family"),
            ]
        );
    }

    #[test]
    fn text_that_is_not_utf8_or_holds_nul_is_refused() {
        assert_eq!(
            error_of(Format::Text, &[0xff, 0xfe, 0x48, 0x00, 0x69, 0x00]),
            ExtractErrorKind::NotUtf8
        );
        // UTF-16 ASCII is valid UTF-8 but for its NULs.
        assert_eq!(
            error_of(Format::Text, b"H\0e\0l\0l\0o\0"),
            ExtractErrorKind::NotUtf8
        );
        assert_eq!(
            error_of(Format::Html, b"<p>caf\xe9</p>"),
            ExtractErrorKind::NotUtf8
        );
        assert_eq!(
            error_of(Format::Text, b"  \n\n\t \n"),
            ExtractErrorKind::NoText
        );
        assert_eq!(
            error_of(Format::Text, b"# Only a heading\n"),
            ExtractErrorKind::NoText
        );
        assert_eq!(
            ExtractError::from(ExtractErrorKind::NotUtf8).to_string(),
            "the file is not UTF-8 text"
        );
    }

    /// In the form of the Debian `postgresql-doc-15` pages: DocBook XSL output.
    const POSTGRES_DOC_PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd"><html xmlns="http://www.w3.org/1999/xhtml"><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8" /><title>11.1. Introduction</title><link rel="stylesheet" type="text/css" href="stylesheet.css" /><meta name="generator" content="DocBook XSL Stylesheets Vsnapshot" /><link rel="prev" href="indexes.html" title="Chapter 11. Indexes" /></head><body id="docContent" class="container-fluid col-10"><div class="navheader"><table width="100%" summary="Navigation header"><tr><th colspan="5" align="center">11.1. Introduction</th></tr><tr><td width="10%" align="left"><a accesskey="p" href="indexes.html" title="Chapter 11. Indexes">Prev</a> </td><td width="10%" align="left"><a accesskey="u" href="indexes.html" title="Chapter 11. Indexes">Up</a></td><th width="60%" align="center">Chapter 11. Indexes</th><td width="20%" align="right"> <a accesskey="h" href="index.html" title="PostgreSQL 15.5 Documentation">Home</a></td><td width="10%" align="right"> <a accesskey="n" href="indexes-types.html" title="11.2. Index Types">Next</a></td></tr></table><hr /></div><div class="sect1" id="INDEXES-INTRO"><div class="titlepage"><div><div><h2 class="title" style="clear: both">11.1. Introduction</h2></div></div></div><p>
   Suppose we have a table similar to this:
<a id="id-1.5.13.4.2.1" class="indexterm"></a>
</p><pre class="programlisting">
CREATE TABLE test1 (
    id integer,
    content varchar
);
</pre><p>
   and the application issues many queries of the form:
</p><pre class="programlisting">
SELECT content FROM test1 WHERE id = <em class="replaceable"><code>constant</code></em>;
</pre><div class="note"><h3 class="title">Note</h3><p>
    Indexes can also be created on <code class="literal">UPDATE</code> targets.
   </p></div><div class="sect2" id="INDEXES-TYPES-BTREE"><div class="titlepage"><div><div><h3 class="title">11.1.1. B-Tree</h3></div></div></div><p>B-trees can handle:</p><table border="0" summary="Simple list" class="simplelist"><tr><td><code class="literal">&lt;</code></td></tr><tr><td><code class="literal">&gt;=</code></td></tr></table><div class="itemizedlist"><ul class="itemizedlist" style="list-style-type: disc; "><li class="listitem"><p>equality and
      range queries</p></li><li class="listitem"><p>sorting</p></li></ul></div><dl class="variablelist"><dt><span class="term"><code class="literal">fillfactor</code></span></dt><dd><p>How full a page is packed.</p></dd></dl></div></div><script>track();</script><div class="navfooter"><hr /><table width="100%" summary="Navigation footer"><tr><td width="40%" align="left"><a accesskey="p" href="indexes.html">Prev</a> </td><td width="20%" align="center"><a accesskey="u" href="indexes.html">Up</a></td><td width="40%" align="right"> <a accesskey="n" href="indexes-types.html">Next</a></td></tr><tr><td width="40%" align="left" valign="top">Chapter 11. Indexes </td><td width="20%" align="center"><a accesskey="h" href="index.html">Home</a></td><td width="40%" align="right" valign="top"> 11.2. Index Types</td></tr></table></div></body></html>"#;

    #[test]
    fn a_postgres_documentation_page_gives_its_text_without_navigation() {
        let extracted = extract(Format::Html, POSTGRES_DOC_PAGE.as_bytes()).expect("html");
        assert_eq!(extracted.title.as_deref(), Some("11.1. Introduction"));
        assert_eq!(
            extracted.blocks,
            vec![
                heading(2, "11.1. Introduction"),
                paragraph("Suppose we have a table similar to this:"),
                paragraph("CREATE TABLE test1 (\n    id integer,\n    content varchar\n);"),
                paragraph("and the application issues many queries of the form:"),
                paragraph("SELECT content FROM test1 WHERE id = constant;"),
                paragraph("Note: Indexes can also be created on UPDATE targets."),
                heading(3, "11.1.1. B-Tree"),
                paragraph("B-trees can handle:"),
                paragraph("<"),
                paragraph(">="),
                item("equality and range queries"),
                item("sorting"),
                paragraph("fillfactor"),
                paragraph("How full a page is packed."),
            ]
        );
    }

    #[test]
    fn html_page_furniture_is_dropped_and_whitespace_collapsed() {
        let html = "<!doctype html><html><head><title> Our\n  shop </title>\
            <style>p { color: red }</style></head><body>\
            <header><h1>Site name</h1></header><nav><a href=/>Home</a></nav>\
            <main><h1>About   us</h1><p>We   sell\n\t<b>bread</b>&nbsp;and <i>cake</i>.<br>\
            Since 1990.</p><div>Loose text in a div<div>nested</div></div>\
            <blockquote>Best bakery 🥐</blockquote><form><label>Email</label></form>\
            <aside>Ads</aside><svg><text>logo</text></svg><noscript>Enable JS</noscript>\
            <p hidden>secret</p></main><footer>© 2024</footer></body></html>";
        let extracted = extract(Format::Html, html.as_bytes()).expect("html");
        assert_eq!(extracted.title.as_deref(), Some("Our shop"));
        assert_eq!(
            extracted.blocks,
            vec![
                heading(1, "About us"),
                paragraph("We sell bread and cake.\nSince 1990."),
                paragraph("Loose text in a div"),
                paragraph("nested"),
                paragraph("Best bakery 🥐"),
            ]
        );
        assert_eq!(
            error_of(
                Format::Html,
                b"<html><nav>Home</nav><script>x()</script></html>"
            ),
            ExtractErrorKind::NoText
        );
    }

    /// A PDF with one page per entry of `pages`, each drawn by its operations.
    fn pdf(pages: Vec<Vec<Operation>>) -> Document {
        let mut document = Document::with_version("1.5");
        let pages_id = document.new_object_id();
        let font_id = document.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
        });
        let resources_id = document.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
        });
        let mut kids = Vec::new();
        for operations in pages {
            let content = Content { operations }.encode().expect("content");
            let content_id = document.add_object(Stream::new(dictionary! {}, content));
            kids.push(Object::from(document.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content_id,
            })));
        }
        let count = i64::try_from(kids.len()).expect("page count");
        document.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => kids,
                "Count" => count,
                "Resources" => resources_id,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog_id = document.add_object(dictionary! {
            "Type" => "Catalog",
            "Pages" => pages_id,
        });
        document.trailer.set("Root", catalog_id);
        document
    }

    fn pdf_bytes(mut document: Document) -> Vec<u8> {
        let mut bytes = Vec::new();
        document.save_to(&mut bytes).expect("save PDF");
        bytes
    }

    /// Lines of 12 pt Helvetica down a page; an empty line leaves a paragraph's gap.
    fn text_page(lines: &[&str]) -> Vec<Operation> {
        let mut operations = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("Td", vec![72.into(), 770.into()]),
        ];
        for line in lines {
            if line.is_empty() {
                operations.push(Operation::new("Td", vec![0.into(), (-14).into()]));
            } else {
                operations.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
                operations.push(Operation::new("Td", vec![0.into(), (-14).into()]));
            }
        }
        operations.push(Operation::new("ET", vec![]));
        operations
    }

    fn two_page_pdf() -> Document {
        pdf(vec![
            text_page(&[
                "Returns are accepted within thirty days.",
                "Bring the receipt and the unused product to any",
                "store; refunds go to the original pay-",
                "ment method.",
                "",
                "Gift cards cannot be refunded.",
            ]),
            text_page(&["Shipping is free over fifty euros."]),
        ])
    }

    #[test]
    fn pdf_text_comes_out_in_paragraphs_and_pages() {
        let extracted = extract(Format::Pdf, &pdf_bytes(two_page_pdf())).expect("pdf");
        assert_eq!(
            extracted.blocks,
            vec![
                paragraph(
                    "Returns are accepted within thirty days. Bring the receipt and the \
                     unused product to any store; refunds go to the original payment method."
                ),
                paragraph("Gift cards cannot be refunded."),
                paragraph("Shipping is free over fifty euros."),
            ]
        );
    }

    #[test]
    fn pdf_without_text_has_no_text_layer() {
        let rectangle = vec![
            Operation::new("re", vec![100.into(), 100.into(), 200.into(), 300.into()]),
            Operation::new("f", vec![]),
        ];
        let error = extract(Format::Pdf, &pdf_bytes(pdf(vec![rectangle]))).expect_err("no text");
        assert_eq!(error.kind(), ExtractErrorKind::PdfNoTextLayer);
        assert_eq!(
            error.to_string(),
            "the PDF has no text layer (it is scanned images); upload a PDF with selectable \
             text or a text file"
        );
    }

    /// Encryption keys derive from the file's ID, which the PDF writer leaves to its users.
    fn two_page_pdf_with_id() -> Document {
        let mut document = two_page_pdf();
        let id = Object::string_literal("0123456789abcdef");
        document.trailer.set("ID", vec![id.clone(), id]);
        document
    }

    #[test]
    fn pdf_needing_a_password_is_encrypted() {
        let mut document = two_page_pdf_with_id();
        let state = EncryptionState::try_from(EncryptionVersion::V2 {
            document: &document,
            owner_password: "owner",
            user_password: "customer",
            key_length: 128,
            permissions: Permissions::all(),
        })
        .expect("encryption state");
        document.encrypt(&state).expect("encrypt");
        assert_eq!(
            error_of(Format::Pdf, &pdf_bytes(document)),
            ExtractErrorKind::PdfEncrypted
        );
    }

    #[test]
    fn pdf_encrypted_with_an_empty_password_is_read() {
        let mut document = two_page_pdf_with_id();
        let state = EncryptionState::try_from(EncryptionVersion::V2 {
            document: &document,
            owner_password: "owner",
            user_password: "",
            key_length: 128,
            permissions: Permissions::PRINTABLE,
        })
        .expect("encryption state");
        document.encrypt(&state).expect("encrypt");
        let extracted = extract(Format::Pdf, &pdf_bytes(document)).expect("readable");
        assert_eq!(
            extracted.blocks.last(),
            Some(&paragraph("Shipping is free over fifty euros."))
        );
    }

    #[test]
    fn pdf_that_makes_the_crate_panic_is_unreadable() {
        let mut document = two_page_pdf();
        // pdf-extract `expect`s a MediaBox on every page.
        for object in document.objects.values_mut() {
            if let Ok(dictionary) = object.as_dict_mut() {
                dictionary.remove(b"MediaBox");
            }
        }
        assert_eq!(
            error_of(Format::Pdf, &pdf_bytes(document)),
            ExtractErrorKind::PdfUnreadable
        );
    }

    #[test]
    fn garbage_is_not_a_pdf_and_a_broken_pdf_is_unreadable() {
        assert_eq!(
            error_of(Format::Pdf, b"\x89PNG\r\n\x1a\n not a pdf at all"),
            ExtractErrorKind::NotPdf
        );
        assert_eq!(error_of(Format::Pdf, b""), ExtractErrorKind::NotPdf);
        assert_eq!(
            error_of(Format::Pdf, b"%PDF-1.7\n\x00\x01garbage without objects"),
            ExtractErrorKind::PdfUnreadable
        );
        let mut truncated = pdf_bytes(two_page_pdf());
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            error_of(Format::Pdf, &truncated),
            ExtractErrorKind::PdfUnreadable | ExtractErrorKind::PdfNoTextLayer
        ));
    }

    fn docx_bytes(docx: docx_rs::Docx) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        docx.pack(&mut bytes).expect("pack DOCX");
        bytes.into_inner()
    }

    fn run(text: &str) -> docx_rs::Run {
        docx_rs::Run::new().add_text(text)
    }

    #[test]
    fn docx_headings_paragraphs_lists_and_tables_become_blocks() {
        use docx_rs::{
            AbstractNumbering, BreakType, Docx, IndentLevel, Level, LevelJc, LevelText,
            NumberFormat, Numbering, NumberingId, Paragraph, Start, Style, StyleType, Table,
            TableCell, TableRow,
        };
        let paragraph_with = |run: docx_rs::Run| Paragraph::new().add_run(run);
        let docx = Docx::new()
            .add_style(Style::new("Title", StyleType::Paragraph).name("Title"))
            .add_style(Style::new("Heading1", StyleType::Paragraph).name("heading 1"))
            // Word in German names its ids in German; the name stays "heading 2".
            .add_style(Style::new("berschrift2", StyleType::Paragraph).name("heading 2"))
            .add_abstract_numbering(AbstractNumbering::new(1).add_level(Level::new(
                0,
                Start::new(1),
                NumberFormat::new("decimal"),
                LevelText::new("%1."),
                LevelJc::new("left"),
            )))
            .add_numbering(Numbering::new(1, 1))
            .add_paragraph(paragraph_with(run("Bakery handbook")).style("Title"))
            .add_paragraph(paragraph_with(run("Opening hours")).style("Heading1"))
            .add_paragraph(
                paragraph_with(run("Monday").add_tab().add_text("8–18 Uhr ☕"))
                    .add_run(run("Closed on").add_break(BreakType::TextWrapping))
                    .add_run(run("Sundays & holidays.")),
            )
            .add_paragraph(Paragraph::new())
            .add_paragraph(paragraph_with(run("Öffnungszeiten")).style("berschrift2"))
            .add_paragraph(
                paragraph_with(run("Order bread"))
                    .numbering(NumberingId::new(1), IndentLevel::new(0)),
            )
            .add_paragraph(
                paragraph_with(run("Collect it"))
                    .numbering(NumberingId::new(1), IndentLevel::new(0)),
            )
            .add_table(Table::new(vec![TableRow::new(vec![
                TableCell::new().add_paragraph(paragraph_with(run("Rye"))),
                TableCell::new().add_paragraph(paragraph_with(run("€4.50"))),
            ])]));
        let extracted = extract(Format::Docx, &docx_bytes(docx)).expect("docx");
        assert_eq!(extracted.title.as_deref(), Some("Bakery handbook"));
        assert_eq!(
            extracted.blocks,
            vec![
                heading(1, "Bakery handbook"),
                heading(1, "Opening hours"),
                paragraph("Monday 8–18 Uhr ☕Closed on\nSundays & holidays."),
                heading(2, "Öffnungszeiten"),
                item("Order bread"),
                item("Collect it"),
                paragraph("Rye"),
                paragraph("€4.50"),
            ]
        );
    }

    #[test]
    fn garbage_and_other_zip_files_are_not_docx() {
        assert_eq!(
            error_of(Format::Docx, b"PK\x03\x04 but then garbage"),
            ExtractErrorKind::NotDocx
        );
        assert_eq!(
            error_of(Format::Docx, &pdf_bytes(two_page_pdf())),
            ExtractErrorKind::NotDocx
        );
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("notes.txt", zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(b"hello").expect("zip write");
        let zip = zip.finish().expect("zip").into_inner();
        assert_eq!(error_of(Format::Docx, &zip), ExtractErrorKind::NotDocx);
        let empty = docx_bytes(docx_rs::Docx::new().add_paragraph(docx_rs::Paragraph::new()));
        assert_eq!(error_of(Format::Docx, &empty), ExtractErrorKind::NoText);
    }
}
