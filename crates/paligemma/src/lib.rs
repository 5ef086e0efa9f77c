//! paligemma
