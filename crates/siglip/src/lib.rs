//! siglip
