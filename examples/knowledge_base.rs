//! A knowledge base for an assistant: a text file and a website in, searched, then answered
//! from.
//!
//! ```sh
//! ANYREPLY_URL=http://127.0.0.1:8080 ANYREPLY_API_KEY=ark_... ANYREPLY_ASSISTANT_ID=1 \
//!   cargo run -p anyreply-client --example knowledge_base -- faq.txt https://www.example.com
//! ```
//!
//! Without a file it uploads a short FAQ of its own; without a URL it adds no website.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use anyreply_client::{
    AssistantInput, Document, DocumentStatus, DocumentType, KnowledgeBaseInput, KnowledgeMode,
    Upload, Website,
};

mod common;

const SAMPLE_FAQ: &str = "# Opening hours\n\nWe are open Monday to Friday, 9:00 to 17:00.\n\n\
                          # Returns\n\nAnything bought in the last 30 days can be returned.\n";

fn main() -> ExitCode {
    common::run(run())
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let file = args.next();
    let website_url = args.next();
    let (client, assistant_id) = common::settings()?;
    let kbs = client.knowledgebases();

    let kb = kbs
        .create(&KnowledgeBaseInput {
            name: Some("Example FAQ".into()),
            description: Some("Made by the knowledge_base example".into()),
            language: Some("english".into()),
        })
        .await
        .with_context(|| format!("creating a knowledge base at {}", client.base_url()))?;

    let (filename, bytes) = match &file {
        Some(path) => (
            path.rsplit('/').next().unwrap_or(path).to_owned(),
            std::fs::read(path).with_context(|| format!("reading {path}"))?,
        ),
        None => ("faq.txt".to_owned(), SAMPLE_FAQ.as_bytes().to_vec()),
    };
    let mut added = vec![
        kbs.upload(
            kb.id,
            Upload::new("FAQ", DocumentType::Txt, filename, bytes),
        )
        .await
        .context("uploading the text file")?,
    ];
    if let Some(url) = website_url {
        let website = Website {
            name: "Website".into(),
            url: Some(url),
            relative_links_limit: Some(5),
            ..Default::default()
        };
        added.push(
            kbs.add_website(kb.id, &website)
                .await
                .context("adding the website")?,
        );
    }

    // Documents are read in the background; searching before they are active finds nothing.
    for document in added {
        let document = kbs
            .wait_until_processed(kb.id, document.id, Duration::from_secs(120))
            .await?;
        report(&document)?;
    }

    for hit in kbs.search(kb.id, "When are you open?", Some(3)).await? {
        show(&format!(
            "{:.3}  {} › {}: {}",
            hit.score,
            hit.document_name,
            hit.heading.unwrap_or_default(),
            hit.text
        ));
    }

    client
        .assistants()
        .update(
            assistant_id,
            &AssistantInput {
                knowledgebase_id: Some(Some(kb.id)),
                knowledgebase_mode: Some(KnowledgeMode::Prompt),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("giving assistant {assistant_id} the knowledge base"))?;
    show(&format!(
        "Assistant {assistant_id} now answers from knowledge base {}.",
        kb.id
    ));
    Ok(())
}

fn report(document: &Document) -> anyhow::Result<()> {
    match document.status {
        DocumentStatus::Active => {
            show(&format!(
                "{}: {} passages",
                document.name, document.passages_count
            ));
            Ok(())
        }
        DocumentStatus::Failed => bail!(
            "{} failed: {}",
            document.name,
            document.reason.as_deref().unwrap_or("no reason given")
        ),
        DocumentStatus::Processing => {
            bail!("{} is still processing after 2 minutes", document.name)
        }
    }
}

#[allow(clippy::print_stdout)]
fn show(line: &str) {
    println!("{line}");
}
