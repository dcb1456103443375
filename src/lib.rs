//! rvsd library
