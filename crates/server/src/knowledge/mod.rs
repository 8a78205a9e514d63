//! The knowledge base: what a business's documents and website say, for its assistant to answer from.

pub mod crawl;
