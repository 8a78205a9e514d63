//! Knowledge bases: documents read into passages, and the passages a reply is given.

pub mod chunk;
pub mod crawl;
pub mod embed;
pub mod extract;
pub mod retrieve;
pub mod worker;
