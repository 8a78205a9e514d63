//! Voice notes: a channel's audio, downloaded within limits and transcribed by an
//! OpenAI-compatible `POST {base}/audio/transcriptions` (OpenAI, whisper.cpp's server, …).
//! The transcript is then the customer's message, with the variable
//! [`KIND_VARIABLE`]` = `[`VOICE_NOTE`], so the conversation shows it was spoken.

use std::future::Future;
use std::time::Duration;

use anyreply_core::env::Env;
use metrics::counter;
use reqwest::multipart::{Form, Part};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::text::Texts;

/// `ANYREPLY_TRANSCRIPTION_BASE_URL`'s default: OpenAI, as the server's `ANYREPLY_LLM_BASE_URL`.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The largest note downloaded or sent: OpenAI's limit for an upload.
pub const MAX_BYTES: u64 = 25 * 1024 * 1024;
/// `ANYREPLY_TRANSCRIPTION_MAX_SECONDS`'s default: five minutes.
pub const DEFAULT_MAX_SECONDS: u64 = 300;
/// The variable that marks a message as a transcribed voice note.
pub const KIND_VARIABLE: &str = "message_kind";
/// Its value for a voice note's transcript.
pub const VOICE_NOTE: &str = "voice_note";
/// Its value for a typed message: variables are merged into the conversation, so each message
/// says what it was, or a voice note's mark would stay on the messages after it.
pub const TEXT: &str = "text";

/// What the channel tells of a note before it is downloaded.
#[derive(Debug, Clone, Default)]
pub struct NoteInfo {
    /// Its length, when the channel says (Telegram does; WhatsApp and Twilio do not).
    pub seconds: Option<u64>,
    /// Its size in bytes, when the channel says.
    pub bytes: Option<u64>,
    /// `audio/ogg`, `audio/mpeg`…; parameters (`; codecs=opus`) are dropped before upload.
    pub mime_type: String,
}

/// What came of a note: its transcript, or a sentence for the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Transcript(String),
    Say(String),
}

/// The voice-note side of a bridge: the transcriber, if one is set, and what to say.
#[derive(Debug, Clone, Default)]
pub struct Voice {
    pub transcriber: Option<Transcriber>,
    pub texts: Texts,
}

/// A client of one transcription model.
#[derive(Debug, Clone)]
pub struct Transcriber {
    http: reqwest::Client,
    url: Url,
    model: String,
    api_key: Option<SecretString>,
    /// The longest note transcribed, in seconds.
    pub max_seconds: u64,
    /// The largest note downloaded, in bytes.
    pub max_bytes: u64,
}

impl Transcriber {
    /// A transcriber of `model` at `base` (the API root, such as `https://api.openai.com/v1`).
    pub fn new(base: &Url, model: &str, api_key: Option<SecretString>) -> anyhow::Result<Self> {
        let mut root = base.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
            url: root.join("audio/transcriptions")?,
            model: model.to_owned(),
            api_key,
            max_seconds: DEFAULT_MAX_SECONDS,
            max_bytes: MAX_BYTES,
        })
    }

    /// The client that downloads notes (each channel adds its own authentication).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Uploads `audio` (multipart `file` and `model`) and returns the text.
    pub async fn transcribe(&self, audio: Vec<u8>, mime_type: &str) -> anyhow::Result<String> {
        let mime = mime_type.split(';').next().unwrap_or_default().trim();
        let file = Part::bytes(audio)
            .file_name(file_name(mime))
            .mime_str(if mime.is_empty() { "audio/ogg" } else { mime })?;
        let form = Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "json");
        let mut request = self.http.post(self.url.clone()).multipart(form);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("transcription unreachable: {}", e.without_url()))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("transcription refused: HTTP {status}: {}", body["error"]);
        }
        Ok(body["text"].as_str().unwrap_or_default().trim().to_owned())
    }

    /// Downloads a note, giving up past `max_bytes` (`Ok(None)`).
    async fn download(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Option<Vec<u8>>> {
        let mut response = request
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                anyhow::anyhow!("the note could not be downloaded: {}", e.without_url())
            })?;
        let mut audio = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            audio.extend_from_slice(&chunk);
            if audio.len() as u64 > self.max_bytes {
                return Ok(None);
            }
        }
        Ok(Some(audio))
    }
}

/// A file name whose extension tells the format (OpenAI goes by it).
fn file_name(mime: &str) -> String {
    let extension = match mime {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "audio/aac" => "m4a",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/webm" => "webm",
        "audio/amr" => "amr",
        "audio/flac" => "flac",
        _ => "ogg",
    };
    format!("voice.{extension}")
}

impl Voice {
    /// Reads `ANYREPLY_TRANSCRIPTION_*`; off unless a model is named.
    pub fn read(env: &mut Env, texts: &Texts) -> Self {
        let model = env.text("ANYREPLY_TRANSCRIPTION_MODEL");
        let base: Url = env.parsed(
            "ANYREPLY_TRANSCRIPTION_BASE_URL",
            Url::parse(DEFAULT_BASE_URL).expect("constant URL"),
            DEFAULT_BASE_URL,
        );
        let api_key = env
            .text("ANYREPLY_TRANSCRIPTION_API_KEY")
            .map(SecretString::from);
        let max_seconds = env.parsed(
            "ANYREPLY_TRANSCRIPTION_MAX_SECONDS",
            DEFAULT_MAX_SECONDS,
            "300",
        );
        let transcriber = model.and_then(|model| match Transcriber::new(&base, &model, api_key) {
            Ok(t) => Some(Transcriber { max_seconds, ..t }),
            Err(error) => {
                env.problem(format!("ANYREPLY_TRANSCRIPTION_BASE_URL: {error}"));
                None
            }
        });
        Self {
            transcriber,
            texts: texts.clone(),
        }
    }

    /// Hears a note: checks what the channel tells of it, downloads it with the request
    /// `locate` gives (the channel's lookup of where the file is), and transcribes it. Every
    /// failure is logged and counted, and becomes a sentence for the customer.
    pub async fn hear<F, Fut>(&self, channel: &'static str, note: NoteInfo, locate: F) -> Heard
    where
        F: FnOnce(&reqwest::Client) -> Fut,
        Fut: Future<Output = anyhow::Result<reqwest::RequestBuilder>>,
    {
        let Some(transcriber) = &self.transcriber else {
            count(channel, "off");
            return Heard::Say(self.texts.voice_off.clone());
        };
        let too_long = note.seconds.is_some_and(|s| s > transcriber.max_seconds)
            || note.bytes.is_some_and(|b| b > transcriber.max_bytes);
        if too_long {
            count(channel, "too_long");
            tracing::info!(channel, ?note.seconds, ?note.bytes, "a voice note over the limits");
            return Heard::Say(self.texts.voice_too_long.clone());
        }
        let heard = async {
            let request = locate(&transcriber.http).await?;
            let Some(audio) = transcriber.download(request).await? else {
                return Ok(None);
            };
            transcriber
                .transcribe(audio, &note.mime_type)
                .await
                .map(Some)
        };
        match heard.await {
            Ok(Some(text)) if !text.is_empty() => {
                count(channel, "transcribed");
                Heard::Transcript(text)
            }
            Ok(Some(_)) => self.failed(channel, anyhow::anyhow!("an empty transcript")),
            Ok(None) => {
                count(channel, "too_long");
                Heard::Say(self.texts.voice_too_long.clone())
            }
            Err(error) => self.failed(channel, error),
        }
    }

    fn failed(&self, channel: &'static str, error: anyhow::Error) -> Heard {
        count(channel, "failed");
        tracing::error!(
            channel,
            error = format!("{error:#}"),
            "a voice note could not be transcribed"
        );
        Heard::Say(self.texts.voice_failed.clone())
    }
}

/// `anyreply_bridge_voice_notes_total{channel, outcome}`.
fn count(channel: &'static str, outcome: &'static str) {
    counter!("anyreply_bridge_voice_notes_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
}
