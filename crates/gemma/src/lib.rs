//! gemma
