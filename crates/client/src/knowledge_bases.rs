//! `client.knowledgebases()`: knowledge bases, their documents and their search.

use std::fmt;
use std::time::Duration;

use anyreply_core::limits::MAX_DOCUMENT_BYTES;
use anyreply_core::wire::{
    Document, DocumentData, DocumentList, DocumentResponse, DocumentStatus, DocumentType,
    KnowledgeBase, KnowledgeBaseInput, KnowledgeBaseList, KnowledgeBaseResponse, SearchHit,
    SearchInput, SearchResults,
};
use bytes::Bytes;
use serde::Serialize;

use crate::client::{Client, MultipartFile, MultipartForm, RequestOptions};
use crate::error::Error;

/// `client.knowledgebases()`.
#[derive(Debug, Clone, Copy)]
pub struct KnowledgeBases<'a> {
    pub(crate) client: &'a Client,
}

/// A file to add to a knowledge base: a PDF (with a text layer), a text file or a Word document
/// of at most 20 MB.
#[derive(Clone, PartialEq, Eq)]
pub struct Upload {
    /// The document's name: 1–255 characters.
    pub name: String,
    /// At most 255 characters.
    pub description: Option<String>,
    /// `Pdf`, `Txt` or `Docx`.
    pub kind: DocumentType,
    /// The file's name, as sent in the `file` part.
    pub filename: String,
    /// The file's contents.
    pub bytes: Bytes,
}

impl Upload {
    /// An upload without a description.
    pub fn new(
        name: impl Into<String>,
        kind: DocumentType,
        filename: impl Into<String>,
        bytes: impl Into<Bytes>,
    ) -> Self {
        Self {
            name: name.into(),
            description: None,
            kind,
            filename: filename.into(),
            bytes: bytes.into(),
        }
    }

    /// With a description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The form the server reads, or why it would refuse it: refused here, so that 20 MB are
    /// not sent only to be turned away.
    fn into_form(self) -> Result<MultipartForm, Error> {
        let content_type = match self.kind {
            DocumentType::Pdf => "application/pdf",
            DocumentType::Txt => "text/plain",
            DocumentType::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            DocumentType::Website => {
                return Err(Error::Invalid(
                    "a website is added with add_website, not uploaded".into(),
                ));
            }
        };
        if self.bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::Invalid(format!(
                "{} is {} bytes; a document may have at most {MAX_DOCUMENT_BYTES} (20 MB)",
                self.filename,
                self.bytes.len()
            )));
        }
        let mut texts = vec![("name", self.name)];
        texts.extend(self.description.map(|d| ("description", d)));
        texts.push(("type", self.kind.as_str().to_owned()));
        Ok(MultipartForm {
            texts,
            files: vec![MultipartFile {
                field: "file",
                filename: self.filename,
                content_type,
                bytes: self.bytes,
            }],
        })
    }
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("kind", &self.kind)
            .field("filename", &self.filename)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// A website to add to a knowledge base: its pages are read from `url` (and the pages it links
/// to, up to `relative_links_limit`) and/or `links`; at least one of the two is required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Website {
    /// The document's name: 1–255 characters.
    pub name: String,
    /// At most 255 characters.
    pub description: Option<String>,
    /// The start page.
    pub url: Option<String>,
    /// Pages read as they are (at most 50).
    pub links: Vec<String>,
    /// How many pages `url` links to are read too: 1–50.
    pub relative_links_limit: Option<i64>,
}

/// [`Website`] as it travels: with its `type`, and each link an object (Famulor's shape).
#[derive(Serialize)]
struct WebsiteBody<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "type")]
    kind: DocumentType,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Link<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    relative_links_limit: Option<i64>,
}

#[derive(Serialize)]
struct Link<'a> {
    link: &'a str,
}

impl<'a> From<&'a Website> for WebsiteBody<'a> {
    fn from(website: &'a Website) -> Self {
        Self {
            name: &website.name,
            description: website.description.as_deref(),
            kind: DocumentType::Website,
            url: website.url.as_deref(),
            links: website.links.iter().map(|link| Link { link }).collect(),
            relative_links_limit: website.relative_links_limit,
        }
    }
}

impl KnowledgeBases<'_> {
    /// `GET /api/user/knowledgebases`: every knowledge base of the account, in id order.
    pub async fn list(&self) -> Result<Vec<KnowledgeBase>, Error> {
        let list: KnowledgeBaseList = self.client.get("api/user/knowledgebases", &[]).await?;
        Ok(list.data)
    }

    /// `POST /api/user/knowledgebases` (`name` is required).
    pub async fn create(&self, input: &KnowledgeBaseInput) -> Result<KnowledgeBase, Error> {
        self.create_with(input, RequestOptions::default()).await
    }

    /// [`Self::create`] with options, such as your own idempotency key.
    pub async fn create_with(
        &self,
        input: &KnowledgeBaseInput,
        options: RequestOptions,
    ) -> Result<KnowledgeBase, Error> {
        let created: KnowledgeBaseResponse = self
            .client
            .post("api/user/knowledgebases", Some(input), options)
            .await?;
        Ok(created.data)
    }

    /// `PUT /api/user/knowledgebases/{id}`: the given fields only; a new `language`
    /// re-indexes every document.
    pub async fn update(
        &self,
        id: i64,
        input: &KnowledgeBaseInput,
    ) -> Result<KnowledgeBase, Error> {
        let updated: KnowledgeBaseResponse = self
            .client
            .put(&format!("api/user/knowledgebases/{id}"), input)
            .await?;
        Ok(updated.data)
    }

    /// `DELETE /api/user/knowledgebases/{id}`, with its documents; answers what was deleted.
    pub async fn delete(&self, id: i64) -> Result<KnowledgeBase, Error> {
        let deleted: KnowledgeBaseResponse = self
            .client
            .delete(&format!("api/user/knowledgebases/{id}"))
            .await?;
        Ok(deleted.data)
    }

    /// `GET /api/user/knowledgebases/{id}/documents`: its documents, in id order.
    pub async fn documents(&self, id: i64) -> Result<Vec<Document>, Error> {
        let list: DocumentList = self
            .client
            .get(&format!("api/user/knowledgebases/{id}/documents"), &[])
            .await?;
        Ok(list.data)
    }

    /// `GET /api/user/knowledgebases/{id}/documents/{document_id}`.
    pub async fn document(&self, id: i64, document_id: i64) -> Result<Document, Error> {
        let read: DocumentData = self
            .client
            .get(
                &format!("api/user/knowledgebases/{id}/documents/{document_id}"),
                &[],
            )
            .await?;
        Ok(read.data)
    }

    /// `DELETE /api/user/knowledgebases/{id}/documents/{document_id}`, with its passages;
    /// answers what was deleted.
    pub async fn delete_document(&self, id: i64, document_id: i64) -> Result<Document, Error> {
        let deleted: DocumentResponse = self
            .client
            .delete(&format!(
                "api/user/knowledgebases/{id}/documents/{document_id}"
            ))
            .await?;
        Ok(deleted.data)
    }

    /// `POST /api/user/knowledgebases/{id}/documents` as `multipart/form-data`: the document,
    /// `processing` until [`Self::wait_until_processed`] says otherwise. A website `kind` or a
    /// file over 20 MB is refused with [`Error::Invalid`] without sending anything.
    pub async fn upload(&self, id: i64, upload: Upload) -> Result<Document, Error> {
        self.upload_with(id, upload, RequestOptions::default())
            .await
    }

    /// [`Self::upload`] with options, such as your own idempotency key.
    pub async fn upload_with(
        &self,
        id: i64,
        upload: Upload,
        options: RequestOptions,
    ) -> Result<Document, Error> {
        let form = upload.into_form()?;
        let added: DocumentResponse = self
            .client
            .post_multipart(
                &format!("api/user/knowledgebases/{id}/documents"),
                form,
                options,
            )
            .await?;
        Ok(added.data)
    }

    /// `POST /api/user/knowledgebases/{id}/documents` with a website: the document,
    /// `processing` until its pages are read.
    pub async fn add_website(&self, id: i64, website: &Website) -> Result<Document, Error> {
        self.add_website_with(id, website, RequestOptions::default())
            .await
    }

    /// [`Self::add_website`] with options, such as your own idempotency key.
    pub async fn add_website_with(
        &self,
        id: i64,
        website: &Website,
        options: RequestOptions,
    ) -> Result<Document, Error> {
        let added: DocumentResponse = self
            .client
            .post(
                &format!("api/user/knowledgebases/{id}/documents"),
                Some(&WebsiteBody::from(website)),
                options,
            )
            .await?;
        Ok(added.data)
    }

    /// `POST /api/user/knowledgebases/{id}/search`: the passages that best answer `query`,
    /// best first; `limit` 1–50, default 5.
    pub async fn search(
        &self,
        id: i64,
        query: impl Into<String>,
        limit: Option<i64>,
    ) -> Result<Vec<SearchHit>, Error> {
        let input = SearchInput {
            query: query.into(),
            limit,
        };
        let results: SearchResults = self
            .client
            .post(
                &format!("api/user/knowledgebases/{id}/search"),
                Some(&input),
                RequestOptions::default(),
            )
            .await?;
        Ok(results.data)
    }

    /// Reads the document until it is no longer `processing` or `timeout` has passed, and
    /// answers it as last read: `Active`, `Failed` (see its `reason`), or still `Processing`.
    /// The waits between reads grow as the retry policy's backoff does (default 200 ms
    /// doubling to 10 s), none past `timeout`.
    pub async fn wait_until_processed(
        &self,
        id: i64,
        document_id: i64,
        timeout: Duration,
    ) -> Result<Document, Error> {
        let policy = self.client.retry_policy();
        let started = tokio::time::Instant::now();
        // At least 1 ms, so that a zero backoff does not read in a busy loop.
        let mut wait = policy.base_delay.max(Duration::from_millis(1));
        loop {
            let document = self.document(id, document_id).await?;
            let left = timeout.saturating_sub(started.elapsed());
            if document.status != DocumentStatus::Processing || left.is_zero() {
                return Ok(document);
            }
            tokio::time::sleep(wait.min(left)).await;
            wait = wait.saturating_mul(2).min(policy.max_delay.max(wait));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_of_exactly_20_mb_is_sent_and_one_byte_more_is_not() {
        let upload = |len| Upload::new("Manual", DocumentType::Pdf, "manual.pdf", vec![0; len]);
        let form = upload(MAX_DOCUMENT_BYTES).into_form().unwrap();
        assert_eq!(form.files[0].bytes.len(), MAX_DOCUMENT_BYTES);
        assert_eq!(form.files[0].content_type, "application/pdf");
        let texts: Vec<_> = form.texts.iter().map(|(name, _)| *name).collect();
        assert_eq!(texts, ["name", "type"]);
        assert!(matches!(
            upload(MAX_DOCUMENT_BYTES + 1).into_form(),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn debug_shows_an_uploads_size_not_its_bytes() {
        let upload = Upload::new("FAQ", DocumentType::Txt, "faq.txt", b"secret text".to_vec());
        let printed = format!("{upload:?}");
        assert!(
            printed.contains("bytes: 11") && !printed.contains("secret"),
            "{printed}"
        );
    }
}
