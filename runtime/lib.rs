//! tulip
