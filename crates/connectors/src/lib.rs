//! Channel bridges: put an AnyReply assistant on Telegram or on SMS (Twilio) with no code of
//! your own. Each bridge receives a customer's message, asks AnyReply for the reply through
//! `anyreply-client` (with the channel's user id as `customer_identifier` and the channel's
//! message id as idempotency key), and sends the reply back on the channel.
//!
//! Layout: [`bridge`] is what every channel shares (asking AnyReply, turning failures into an
//! apology); [`split`] cuts long replies; [`seen`] remembers delivered messages; [`state_file`] reads and writes the
//! files of the state directory; [`text`] holds
//! every sentence a bridge says itself; [`transcribe`] turns voice notes into text; [`operator`] follows the assistant's events and hands
//! operator messages to the channel, [`cursor`] keeps its place on disk; [`service`] holds the
//! one start-up path of every bridge binary, [`service::main`], which a channel joins by
//! implementing [`service::Channel`]; [`telegram`], [`twilio`], [`whatsapp`], [`messenger`] and [`email`] are
//! the channels; [`meta`] holds what Meta's webhooks share (WhatsApp, Messenger).

pub mod bridge;
pub mod cursor;
pub mod email;
pub mod messenger;
pub mod meta;
pub mod metrics;
pub mod operator;
pub mod queue;
pub mod seen;
pub mod service;
pub mod split;
pub mod state_file;
pub mod telegram;
pub mod text;
pub mod transcribe;
pub mod twilio;
pub mod whatsapp;
