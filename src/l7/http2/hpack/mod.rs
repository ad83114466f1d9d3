//! HPACK (RFC 7541), the header compression of HTTP/2: the decoder that reads the header
//! blocks clients send, and the encoder that writes Fulcrum's response heads.
//!
//! The encoder keeps no dynamic table (every field is a literal "without indexing", or a
//! static-table index for the common statuses), so a connection's encoder has no state
//! to keep and a response head is written in one pass. The decoder keeps the full
//! dynamic table the client's encoder expects.

pub mod decode;
pub mod encode;
pub mod huffman;
pub mod table;

pub use decode::{CompressionError, Decoder, Field};
pub use encode::encode_field;
