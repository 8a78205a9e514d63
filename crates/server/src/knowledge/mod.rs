//! The knowledge base's documents: their text read out of uploaded files, cut into passages.

pub mod chunk;
pub mod extract;
